"""A store written by someone else: no unpickling unless the caller asks, no reads outside
the store, every malformed document a TPDEError (docs/security.md)."""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store_craft import dump, edit_manifest, rename_array, reseal
from tpde import TPDEError
from tpde.cli import main as cli_main
from tpde.store import CheckpointStore


class _Mkdir:
    """An object whose unpickling creates a folder: proof that code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _store_with_payload(tmp_path: Path) -> tuple[Path, Path]:
    path, proof = tmp_path / "s", tmp_path / "code-ran"
    payload = np.frombuffer(pickle.dumps(_Mkdir(str(proof))), dtype=np.uint8).copy()
    CheckpointStore(path).save(0, {"w": np.arange(8, dtype=np.float32), "blob": payload})
    return path, proof


def test_pickle_node_on_a_plain_array_is_refused(tmp_path, capsys):
    path, proof = _store_with_payload(tmp_path)

    def point_pickle_at_blob(body):
        body["tree"]["dict"][1][1] = {"pickle": "blob"}

    edit_manifest(path, 0, point_pickle_at_blob)
    store = CheckpointStore(path, mode="r")
    for allow in (False, True):  # the entry is not a pickle: refused even when allowed
        with pytest.raises(TPDEError) as e:
            store.load(0, allow_pickle=allow)
        assert e.value.code == "corrupt" and "blob" in str(e.value)
    assert cli_main(["unpack", str(path), "--step", "0", "-o", str(tmp_path / "out.pt")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert not proof.exists() and not (tmp_path / "out.pt").exists()


def test_pickle_entry_needs_the_callers_allow_pickle(tmp_path, capsys):
    path, proof = _store_with_payload(tmp_path)

    def make_it_a_pickle(body):
        body["tree"]["dict"][1][1] = {"pickle": "blob"}
        body["arrays"]["blob"]["kind"] = "pickle"
        body["arrays"]["blob"]["dtype"] = "uint8"

    edit_manifest(path, 0, make_it_a_pickle)
    with pytest.raises(TPDEError) as e:
        CheckpointStore(path, mode="r").load(0)
    assert e.value.code == "pickle_refused"
    assert cli_main(["unpack", str(path), "--step", "0", "-o", str(tmp_path / "out.pt")]) == 1
    assert "allow" in capsys.readouterr().err
    assert not proof.exists()
    CheckpointStore(path, mode="r").load(0, allow_pickle=True)  # the caller's decision
    assert proof.exists()


ESCAPES = ["../../outside/w", "/abs/w", "a\\b", "w\x00", ".zarray", "a//b", "x" * 300, "a/./b", "..", "w/.."]


@pytest.mark.parametrize("name", ESCAPES)
def test_names_that_escape_the_store_are_refused(tmp_path, name):
    path = tmp_path / "s"
    CheckpointStore(path, bundle_below=0).save(0, {"w": np.arange(100, dtype=np.float32)})
    edit_manifest(path, 0, lambda body: rename_array(body, "w", name))
    store = CheckpointStore(path, mode="r")
    with pytest.raises(TPDEError) as missing:
        store.load(0)
    assert missing.value.code == "corrupt" and "refusing to use it as a path" in str(missing.value)
    # the same error when a file of that name exists outside the store (no existence probe)
    outside = tmp_path / "outside" / "w"
    shutil.copytree(path / "steps" / "0" / "w", outside)
    with pytest.raises(TPDEError) as present:
        store.load(0)
    assert str(present.value) == str(missing.value)
    problems = store.verify()
    assert len(problems) == 1 and "tensor name" in problems[0]


@pytest.mark.parametrize("name", ESCAPES)
def test_names_that_escape_are_refused_for_bundled_arrays_too(tmp_path, name):
    """A bundled array is never opened as a path, but its name is still a tensor name
    that a user may write out (unpack, get): the same rules apply."""
    path = tmp_path / "s"
    CheckpointStore(path).save(0, {"w": np.arange(100, dtype=np.float32)})
    assert (path / "steps" / "0" / ".bundle").is_file() and not (path / "steps" / "0" / "w").exists()
    edit_manifest(path, 0, lambda body: rename_array(body, "w", name))
    with pytest.raises(TPDEError) as e:
        CheckpointStore(path, mode="r").load(0)
    assert e.value.code == "corrupt" and "refusing to use it as a path" in str(e.value)


@pytest.mark.parametrize("bundle_below, key", [(0, "w"), (None, ".bundle")])
def test_symbolic_links_out_of_the_store_are_refused(tmp_path, bundle_below, key):
    """An array's folder, or a step's bundle, replaced by a link out of the store."""
    path = tmp_path / "s"
    state = {"w": np.arange(100, dtype=np.float32), "b": np.ones(3, np.float32)}
    CheckpointStore(path, bundle_below=bundle_below).save(0, state)
    outside = tmp_path / "outside"
    shutil.move(path / "steps" / "0" / key, outside)
    (path / "steps" / "0" / key).symlink_to(outside)
    store = CheckpointStore(path, mode="r")
    with pytest.raises(TPDEError, match="outside the store") as present:
        store.load(0)
    with pytest.raises(TPDEError, match="outside the store"):
        store.load_tensor(0, "w")
    if outside.is_dir():
        shutil.rmtree(outside)
    else:
        outside.unlink()
    with pytest.raises(TPDEError) as missing:  # the same error: no probe of what exists outside
        store.load(0)
    assert str(missing.value) == str(present.value)
    assert any("outside the store" in p for p in store.verify())


def test_marker_names_and_numbers_are_checked(tmp_path):
    path = tmp_path / "s"
    store = CheckpointStore(path)
    for step in range(2):
        store.save(step, {"w": np.full(10, step, dtype=np.float32)})
    marker = (path / "commits" / "1").read_bytes()
    for odd in ("01", "\u0661", "+1", "1 "):
        (path / "commits" / odd).write_bytes(marker)
    assert store.steps() == [0, 1]
    assert set(store.uncommitted()) >= {f"commits/{odd}" for odd in ("01", "\u0661", "+1", "1 ")}
    fields = json.loads(marker)
    for key, bad in (("base_step", "../../x"), ("base_step", 1.5), ("depth", "x"), ("kind", ["delta"]),
                     ("step", True), ("manifest_crc32", None)):
        (path / "commits" / "1").write_bytes(dump({**fields, key: bad}))
        with pytest.raises(TPDEError) as e:
            store.load(1)
        assert e.value.code == "corrupt", (key, bad, e.value)


def test_overlong_keys_are_refused_before_writing(tmp_path):
    path = tmp_path / "s"
    store = CheckpointStore(path)
    with pytest.raises(TPDEError) as e:
        store.save(0, {"é" * 100: np.zeros(3)})  # 600 bytes once escaped
    assert e.value.code == "invalid_argument" and "255" in str(e.value)
    assert store.uncommitted() == [] and not (path / "steps" / "0").exists()


# ---------------------------------------------------------------- crafted-store property test

_NAMES = ["w", "b", "o", "x", "../x", "/etc/passwd", "blob"]
_CRAFTED = [{"pickle": n} for n in _NAMES] + [{"array": n} for n in _NAMES] + [{"alias": n} for n in _NAMES] + [
    "pickle", "numpy", "torch", "uint8", "|u1", "O", "object", "load", "float32", -1, 0, 2**64, 1e308, None, True,
    "", "..", {"kind": "pickle"}, {"torch_dtype": "load"}, {"np_scalar": "O", "hex": "00"}, {"bytes": "%%"},
]
_KEYS = ["pickle", "array", "alias", "dict", "odict", "list", "tuple", "kind", "meta", "np_scalar", "hex",
         "torch_dtype", "float", "bytes", "size", "x"]
_LEAF = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
         | st.text(max_size=6) | st.sampled_from(_CRAFTED))
_VALUES = st.recursive(
    _LEAF, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), c, max_size=2), max_leaves=6
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _set(doc, path, value):
    if not path:
        return value
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = value
    return doc


@pytest.fixture(scope="module")
def base_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crafted") / "s"
    store = CheckpointStore(path, keyframe_every=3, chunk_elements=64)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(200).astype(np.float32)
    for step in range(4):
        state = {"w": w + step, "b": np.arange(9, dtype=np.uint8) + step, "n": {"x": [step, "s", 1.5]},
                 "s": np.float64(step)}
        if step == 2:
            state["o"] = {1, 2}  # a pickled object, saved by a caller that allowed it
        store.save(step, state, allow_pickle=step == 2)
    store.close()
    return path


def _documents(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and (p.name.startswith(".z") or p.parent.name == "commits"))


class _PickleReached(BaseException):
    """Raised by the patched unpicklers; a BaseException so no `except Exception` hides it."""


@st.composite
def _mutations(draw, docs: dict[str, object]):
    name = draw(st.sampled_from(sorted(docs)))
    doc = copy.deepcopy(docs[name])
    paths = list(_paths(doc))
    path = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(["set", "set", "delete", "rename"]))
    if op == "set" or not path or not isinstance(_get(doc, path[:-1]), dict):
        doc = _set(doc, path, draw(_VALUES))
    elif op == "delete":
        del _get(doc, path[:-1])[path[-1]]
    else:
        parent = _get(doc, path[:-1])
        parent[draw(st.sampled_from(_KEYS))] = parent.pop(path[-1])
    return name, doc


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


@pytest.mark.slow
def test_mutated_stores_never_unpickle_and_fail_as_tpde_errors(base_store):
    docs = {name: json.loads((base_store / name).read_bytes()) for name in _documents(base_store)}

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(_mutations(docs))
    def check(mutation):
        name, doc = mutation
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "s"
            shutil.copytree(base_store, root)
            (root / name).write_bytes(dump(doc))
            if name.startswith("steps/") and name.endswith("/.zattrs") and name.count("/") == 2:
                try:
                    reseal(root, int(name.split("/")[1]))
                except (ValueError, OSError):
                    pass
            _exercise(root)

    with mock.patch("pickle.loads", side_effect=_PickleReached), \
            mock.patch("pickle.load", side_effect=_PickleReached), \
            mock.patch("pickle.Unpickler", side_effect=_PickleReached):
        check()


def _exercise(root: Path) -> None:
    """Every read path of a store; only TPDEError may come out."""
    try:
        store = CheckpointStore(root, mode="r")
    except TPDEError:
        return
    calls = [store.steps, store.history, store.uncommitted, lambda: store.verify()]
    for step in [0, 1, 2, 3]:
        calls += [lambda s=step: store.load(s), lambda s=step: store.info(s), lambda s=step: store.tensors(s),
                  lambda s=step: store.load_tensor(s, "w", slice(0, 10)), lambda s=step: store.load_tensor(s, "b")]
    for call in calls:
        try:
            call()
        except TPDEError:
            pass
