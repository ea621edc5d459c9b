"""States the store cannot hold exactly are refused with one-line TPDEErrors, and values it
does hold come back exactly (issue 13, items 7 and 8): nothing changes silently.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections import OrderedDict, defaultdict, namedtuple
from enum import IntEnum

import numpy as np
import pytest
import torch

from store_helpers import assert_same_state, raw_bytes
from tpde import CheckpointStore, TPDEError


@pytest.fixture
def store(tmp_path):
    return CheckpointStore(tmp_path / "s", mode="w")


def refused(store, state, *words: str, step: int = 0, **kw) -> TPDEError:
    """save() raises a one-line TPDEError naming `words`, and leaves nothing behind."""
    with pytest.raises(TPDEError) as info:
        store.save(step, state, **kw)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert store.steps() == [] and store.uncommitted() == []
    return info.value


def round_trip(store, state, step: int = 0, **kw):
    store.save(step, state, **kw)
    return store.load(step, **{k: v for k, v in kw.items() if k == "allow_pickle"})


# --- names the file system cannot hold ------------------------------------------------------------


def test_key_longer_than_a_file_name(store, tmp_path):
    refused(store, {"a" * 300: np.zeros(3)}, "255")
    assert not (tmp_path / "s" / "steps" / "0").exists()


@pytest.mark.parametrize("key", ["/" * 100, "é" * 50, "%" * 90, "." + "a" * 254])
def test_key_too_long_after_escaping(store, tmp_path, key):
    refused(store, {key: np.zeros(3)}, "escap")
    assert not (tmp_path / "s" / "steps" / "0").exists()


def test_long_but_fitting_keys_round_trip(store):
    state = {"k" * 200: np.arange(3.0), "x": {"é" * 40: np.ones(2, np.float32)}}
    assert_same_state(round_trip(store, state), state)


def test_name_longer_than_a_path(store, tmp_path):
    deep = cur = {}
    for _ in range(40):  # 40 levels of 200-byte keys: each fits, the path does not
        cur["k" * 200] = {}
        cur = cur["k" * 200]
    cur["w"] = np.zeros(2)
    refused(store, deep, "long")
    assert not (tmp_path / "s" / "steps" / "0").exists()


def test_scalar_under_a_long_key_needs_no_file(store):
    state = {"a" * 300: 1, "b": "x" * 10000}  # only array leaves become files
    assert_same_state(round_trip(store, state), state)


# --- strings that are not text ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["\ud800", "a\udfffb", "\udc80"])
def test_lone_surrogate_key(store, key):
    refused(store, {key: np.zeros(3)}, "surrogate")
    refused(store, {"x": {key: 1}}, "surrogate")


def test_lone_surrogate_value_round_trips(store):
    state = {"s": "a\ud800b", "t": ["\udfff"]}
    assert_same_state(round_trip(store, state), state)


# --- self-reference and depth ----------------------------------------------------------------


def test_self_referential_dict(store):
    a = {"w": np.zeros(2)}
    a["self"] = a
    refused(store, a, "refers to itself", "self")


def test_self_referential_list_and_tuple(store):
    loop: list = [1]
    loop.append(loop)
    refused(store, {"x": loop}, "refers to itself")
    inner: list = []
    outer = ({"l": inner},)
    inner.append(outer)
    refused(store, outer, "refers to itself")


def test_shared_containers_are_not_cycles(store):
    shared = {"v": 1}
    state = {"a": shared, "b": shared, "c": [shared, shared]}
    assert_same_state(round_trip(store, state), state)


@pytest.mark.parametrize("kind", ["dict", "list", "tuple"])
def test_5000_deep_state(store, kind):
    deep: object = np.zeros(1)
    for _ in range(5000):
        deep = {"x": deep} if kind == "dict" else [deep] if kind == "list" else (deep,)
    refused(store, deep, "deeper than")


def test_100_deep_state_round_trips(store):
    deep: object = np.arange(3.0)
    for i in range(99):
        deep = {"k": deep, "i": i}
    assert_same_state(round_trip(store, deep), deep)


# --- tensors the store cannot code ------------------------------------------------------------

SUB_BYTE = [getattr(torch, f"{p}{b}") for p in ("int", "uint") for b in range(1, 8) if hasattr(torch, f"{p}{b}")]


@pytest.mark.parametrize("dtype", SUB_BYTE, ids=str)
def test_sub_byte_dtypes(store, dtype):
    refused(store, {"t": torch.zeros(4, dtype=dtype)}, str(dtype).removeprefix("torch."), "not supported")


@pytest.mark.parametrize("dtype", [torch.qint8, torch.quint8, torch.qint32])
def test_quantized_tensors(store, dtype):
    with warnings.catch_warnings():  # torch's quantization API warns that it is deprecated
        warnings.simplefilter("ignore")
        q = torch.quantize_per_tensor(torch.randn(8), 0.1, 3 if dtype != torch.qint8 else 0, dtype)
    refused(store, {"q": q}, "quantized", "dequantize")


def test_per_channel_quantized_tensor(store):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(torch.randn(2, 3), torch.tensor([0.1, 0.2]), torch.tensor([0, 0]), 0,
                                       torch.qint8)
    refused(store, {"q": q}, "quantized")


@pytest.mark.parametrize("layout", [torch.strided, torch.jagged])
def test_nested_tensors(store, layout):
    nt = torch.nested.nested_tensor([torch.randn(2, 3), torch.randn(4, 3)], layout=layout)
    refused(store, {"n": nt}, "nested")


def test_dtensor(store):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, distribute_tensor

    started = not dist.is_initialized()
    if started:
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        dt = distribute_tensor(torch.arange(6.0), mesh, [Replicate()])
        refused(store, {"d": dt}, "DTensor", "full_tensor")
    finally:
        if started:
            dist.destroy_process_group()


def test_other_tensor_subclasses(store):
    class Tagged(torch.Tensor):
        pass

    t = torch.arange(3.0).as_subclass(Tagged)
    refused(store, {"t": t}, "Tagged")


# --- values that used to change silently -------------------------------------------------------


def test_torch_bool_bytes_round_trip(store):
    raw = torch.tensor([0, 1, 2, 255, 0x80, 7], dtype=torch.uint8)
    state = {"b": raw.view(torch.bool), "m": raw.reshape(2, 3).view(torch.bool).t()}  # also non-contiguous
    back = round_trip(store, state)
    assert back["b"].dtype == torch.bool and raw_bytes(back["b"]) == bytes(raw.tolist())
    transposed = raw.reshape(2, 3).t().contiguous()  # the same bytes, as uint8 (a bool copy would normalise)
    assert back["m"].is_contiguous() and back["m"].view(torch.uint8).tolist() == transposed.tolist()


def test_numpy_bool_bytes_round_trip(store):
    raw = np.array([0, 1, 2, 255, 0x80], np.uint8)
    back = round_trip(store, {"b": raw.view(np.bool_)})
    assert back["b"].dtype == np.bool_ and back["b"].view(np.uint8).tolist() == raw.tolist()


def test_parameters_come_back_as_parameters(store):
    p = torch.nn.Parameter(torch.randn(3, 2))
    frozen = torch.nn.Parameter(torch.randn(2), requires_grad=False)
    leaf = torch.randn(4, requires_grad=True)
    back = round_trip(store, {"p": p, "f": frozen, "t": leaf, "plain": torch.ones(2)})
    assert type(back["p"]) is torch.nn.Parameter and back["p"].requires_grad
    assert type(back["f"]) is torch.nn.Parameter and not back["f"].requires_grad
    assert type(back["t"]) is torch.Tensor and back["t"].requires_grad
    assert type(back["plain"]) is torch.Tensor and not back["plain"].requires_grad
    for k in ("p", "f", "t"):
        assert raw_bytes(back[k]) == raw_bytes({"p": p, "f": frozen, "t": leaf}[k])


class Name(str):
    pass


class Count(IntEnum):
    ONE = 1


class Config(dict):
    pass


Pair = namedtuple("Pair", "a b")


class Blob(bytes):
    pass


class Items(list):
    pass


class Grid(np.ndarray):
    pass


SUBCLASSES = [
    ("str subclass value", {"s": Name("x")}),
    ("str subclass key", {Name("k"): 1}),
    ("IntEnum value", {"e": Count.ONE}),
    ("IntEnum key", {Count.ONE: 1}),
    ("dict subclass", {"c": Config(a=1)}),
    ("defaultdict", {"d": defaultdict(int, a=1)}),
    ("namedtuple", {"n": Pair(1, 2)}),
    ("bytes subclass", {"b": Blob(b"x")}),
    ("list subclass", {"l": Items([1])}),
    ("masked array", {"m": np.ma.masked_array([1.0, 2.0], mask=[0, 1])}),
    ("ndarray subclass", {"m": np.arange(3.0).view(Grid)}),
]


@pytest.mark.parametrize(("label", "state"), SUBCLASSES, ids=[label for label, _ in SUBCLASSES])
def test_subclasses_are_refused_or_pickled_exactly(tmp_path, label, state):
    store = CheckpointStore(tmp_path / "s", mode="w")
    refused(store, state, "allow_pickle")
    store.save(1, state, allow_pickle=True)
    back = store.load(1, allow_pickle=True)
    (key, value), = state.items()
    (back_key, back_value), = back.items()
    assert type(back_key) is type(key) and type(back_value) is type(value), label
    if isinstance(value, np.ndarray):
        assert np.array_equal(np.asarray(back_value), np.asarray(value))
        if isinstance(value, np.ma.MaskedArray):
            assert back_value.mask.tolist() == value.mask.tolist()
    else:
        assert back_value == value and back_key == key


@pytest.mark.parametrize("bits", [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001,
                                  0xFFF4000000000123, 0x7FF0000000000000, 0xFFF0000000000000])
def test_non_finite_floats_keep_their_bits(store, bits):
    value = struct.unpack("<d", struct.pack("<Q", bits))[0]
    back = round_trip(store, {"f": value, "l": [value]})
    for got in (back["f"], back["l"][0]):
        assert type(got) is float
        assert struct.pack("<d", got) == struct.pack("<d", value)
        assert math.isnan(got) == math.isnan(value)


def test_ordered_dicts_keep_order_and_metadata(store):
    sd = torch.nn.Linear(2, 3).state_dict()
    assert isinstance(sd, OrderedDict)
    back = round_trip(store, {"model": sd})
    assert_same_state(back, {"model": sd})
