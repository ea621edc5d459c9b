"""torch_adapter, state_tree and chunking: the pieces under CheckpointStore."""

from __future__ import annotations

import json
from collections import OrderedDict
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from store_helpers import assert_same_state, raw_bytes
from tpde import TPDEError
from tpde.state.torch_adapter import alias_key, from_storage, is_array, to_storage
from tpde.state.tree import escape_component, flatten_state, unflatten_state
from tpde.store.grid import ChunkGrid, choose_chunks
from tpde.store.schema import json_bytes

TORCH_DTYPES = [
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8,
    torch.int16, torch.uint16, torch.int32, torch.uint32, torch.int64, torch.uint64, torch.bool,
    torch.complex64, torch.complex128, torch.complex32, torch.float8_e4m3fn, torch.float8_e5m2,
]


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 0, 3), (4, 5)])
def test_every_torch_dtype_round_trips_bit_exact(dtype, shape):
    numel = int(np.prod(shape))
    bits = torch.randint(0, 256, (numel * dtype.itemsize,), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))
    if dtype == torch.bool:
        bits = bits % 2
    tensor = bits.view(dtype).reshape(shape)
    arr, spec = to_storage(tensor)
    assert arr.flags.c_contiguous
    back = from_storage(arr, spec)
    assert back.dtype == dtype and back.shape == tensor.shape
    assert raw_bytes(back) == raw_bytes(tensor)


def test_snapshot_is_a_copy():
    t = torch.zeros(4)
    arr, _ = to_storage(t)
    t.add_(1)
    assert arr.tolist() == [0, 0, 0, 0]


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
def test_unsupported_tensors_are_refused():
    with pytest.raises(TPDEError, match="dense"):
        to_storage(torch.eye(3).to_sparse())
    with pytest.raises(TPDEError, match="meta device"):
        to_storage(torch.empty(3, device="meta"))
    with pytest.raises(TPDEError, match="not supported"):
        to_storage(torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8))


def test_is_array_and_alias_key():
    assert is_array(torch.ones(1)) and is_array(np.ones(1)) and not is_array(np.array(["a"]))
    t = torch.ones(4, 4)
    assert alias_key(t) == alias_key(t.view(4, 4)) != alias_key(t[1])


def test_escaping_keeps_names_injective_and_safe():
    for key in ["a/b", "%", "", ".zarray", "..", "layers.0.weight", "é"]:
        escaped = escape_component(key)
        assert "/" not in escaped and not escaped.startswith(".")
        assert (unquote(escaped) if escaped != "%" else "") == key
    assert escape_component(3) == "3"


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5)
keys = st.integers(-3, 100) | st.text(max_size=4)
leaves = json_scalars | st.integers(0, 5).map(lambda n: torch.arange(n, dtype=torch.float32))


def dicts_without_clashes(children):
    return st.dictionaries(keys, children, max_size=4).filter(
        lambda d: len({str(k) for k in d}) == len(d)
    )


states = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3)
    | st.tuples(children, children)
    | dicts_without_clashes(children)
    | dicts_without_clashes(children).map(OrderedDict),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(states)
def test_state_tree_round_trips(state):
    tree, leaves_ = flatten_state(state, is_array=is_array, alias_key=alias_key)
    tree = json.loads(json_bytes(tree))  # what the manifest stores
    arrays = {leaf.name: leaf.value for leaf in leaves_}
    assert_same_state(unflatten_state(tree, arrays, unpickle=None), state)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 7), min_size=0, max_size=3),
    st.integers(1, 40),
    st.data(),
)
def test_chunk_grid_covers_array_and_slices(shape, target, data):
    shape = tuple(shape)
    chunks = choose_chunks(shape, target)
    grid = ChunkGrid(shape, chunks)
    arr = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    lo = [data.draw(st.integers(0, s)) for s in shape]
    box = tuple((a, data.draw(st.integers(a, s))) for a, s in zip(lo, shape))
    out = np.full(tuple(hi - a for a, hi in box), -1, dtype=np.int32)
    for index in grid.overlapping(box):
        chunk = grid.extract(arr, index)
        assert chunk.shape == chunks and chunk.flags.c_contiguous
        grid.copy_into(out, box, index, chunk)
    np.testing.assert_array_equal(out, arr[tuple(slice(a, b) for a, b in box)])
    assert sum(1 for _ in grid.indices()) == len(grid)
