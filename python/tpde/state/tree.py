"""Nested checkpoint state <-> (JSON skeleton, named array leaves).

A state is what training code passes to `torch.save`: dicts (with str or int keys),
OrderedDicts (a module's `state_dict`, whose `_metadata` is kept), lists, tuples, arrays
and JSON-able scalars. `flatten_state` replaces every array by a reference to its *name*,
the path of keys joined by "/" ("optimizer/state/0/exp_avg"), and returns the arrays
apart; `unflatten_state` puts them back. Scalars keep their exact Python type and value.

Only exact types are walked: a subclass (a str or dict subclass, an IntEnum, a namedtuple,
a masked array) would come back as its base type, so it is refused like any other object
(or pickled, with allow_pickle). So are states that hold themselves, states nested deeper
than MAX_DEPTH, keys that are not text (lone surrogates) and array names that no file
system or object store takes (NAME_MAX bytes per escaped key, PATH_MAX bytes per name).

Skeleton nodes: JSON null/bool/int/str/finite float stand for themselves; anything else is
a one-key object: {"dict": [[key, node], ...]}, {"odict": [...], "meta": node},
{"list": [...]}, {"tuple": [...]}, {"size": [...]}, {"float": "nan", "bits": hex} (the
bits only for NaN, whose sign and payload repr loses), {"bytes": base64},
{"torch_dtype": name}, {"torch_device": name}, {"np_scalar": dtype, "hex": raw bytes},
{"array": name}, {"alias": name} (same tensor as an earlier array) and {"pickle": name}
(an object pickled into a uint8 array, only with allow_pickle).
"""

from __future__ import annotations

import base64
import math
import pickle
import struct
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np

from ..errors import TPDEError

_SAFE = "-_."
MAX_DEPTH = 100  # nested containers in a state (JSON and Python recursion stay far below their limits)
NAME_MAX = 255  # bytes of one escaped key: one file or folder name on common file systems
PATH_MAX = 1024  # bytes of a whole array name (object stores take keys of 1024 bytes)


def escape_component(key: str | int) -> str:
    """One path component of a leaf name: ints as digits, strings percent-escaped.

    "/" and "%" are escaped so names split back into their keys (`urllib.parse.unquote`
    of each part; "%" alone is ""); a leading "." is escaped
    so no name collides with zarr's ".zarray"/".zattrs" keys; "" becomes "%".
    """
    if isinstance(key, int):
        return str(key)
    if key == "":
        return "%"
    text = quote(key, safe=_SAFE)
    return "%2E" + text[1:] if text.startswith(".") else text


@dataclass(frozen=True)
class Leaf:
    """An array taken out of the state: its name and the object (tensor, ndarray, bytes)."""

    name: str
    value: object
    pickled: bool = False


def flatten_state(
    state: object,
    *,
    is_array: Callable[[object], bool],
    alias_key: Callable[[object], Hashable],
    allow_pickle: bool = False,
) -> tuple[object, list[Leaf]]:
    """Split `state` into a JSON skeleton and its array leaves (see module docstring)."""
    leaves: list[Leaf] = []
    names: set[str] = set()
    seen: dict[Hashable, str] = {}
    active: set[int] = set()  # ids of the containers on the current path

    def leaf_name(path: tuple) -> str:
        parts = [escape_component(k) for k in path]
        for key, part in zip(path, parts):
            if len(part) > NAME_MAX:
                raise TPDEError(
                    f"key {_short(key)} at {_where(path)} is {len(part)} bytes once escaped for the store; "
                    f"keys above arrays must fit one file name ({NAME_MAX} bytes)",
                    "invalid_argument",
                )
        name = "/".join(parts) if path else "%"
        if len(name) > PATH_MAX:
            raise TPDEError(
                f"the array at {_where(path)} has a name {len(name)} bytes long once escaped; "
                f"array names are limited to {PATH_MAX} bytes",
                "invalid_argument",
            )
        if name in names:
            raise TPDEError(
                f"two entries of the state map to the same name {name!r} "
                "(an int key and a str key with the same digits?)",
                "invalid_argument",
            )
        names.add(name)
        return name

    def refuse_or_pickle(obj: object, path: tuple, why: str) -> dict:
        if not allow_pickle:
            raise TPDEError(
                f"cannot store {why} at {_where(path)}; tpde stores tensors, arrays, dicts, lists, "
                "tuples and JSON scalars of exactly those types (pass allow_pickle=True to pickle "
                "other objects)",
                "unsupported_type",
            )
        name = leaf_name(path)
        leaves.append(Leaf(name, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), True))
        return {"pickle": name}

    def walk(obj: object, path: tuple) -> object:
        if obj is None or type(obj) in (bool, str, int):
            return obj
        if type(obj) is float:
            if math.isfinite(obj):
                return obj
            if math.isnan(obj):  # repr loses the sign and payload of a NaN
                return {"float": "nan", "bits": struct.pack(">d", obj).hex()}
            return {"float": repr(obj)}
        if len(path) > MAX_DEPTH:
            raise TPDEError(f"the state is nested deeper than {MAX_DEPTH} levels at {_where(path[:8])}...",
                            "unsupported_type")
        if id(obj) in active:
            raise TPDEError(f"the state refers to itself at {_where(path)} (a container holds itself)",
                            "unsupported_type")
        active.add(id(obj))
        try:
            return walk_object(obj, path)
        finally:
            active.discard(id(obj))

    def walk_object(obj: object, path: tuple) -> object:
        if is_array(obj):
            key = alias_key(obj)
            if key in seen:
                return {"alias": seen[key]}
            name = leaf_name(path)
            seen[key] = name
            leaves.append(Leaf(name, obj))
            return {"array": name}
        if type(obj) in (dict, OrderedDict):
            bad = [k for k in obj if type(k) not in (str, int)]
            if bad:
                return refuse_or_pickle(obj, path, f"a dict with a {_type_name(bad[0])} key")
            for k in obj:
                _check_text(k, path)
            items = [[k, walk(v, path + (k,))] for k, v in obj.items()]
            if type(obj) is OrderedDict:
                node = {"odict": items}
                meta = getattr(obj, "_metadata", None)
                if meta is not None:
                    node["meta"] = _plain(meta, path)
                return node
            return {"dict": items}
        if type(obj) is list:
            return {"list": [walk(v, path + (i,)) for i, v in enumerate(obj)]}
        if _is_torch_size(obj):
            return {"size": list(obj)}
        if type(obj) is tuple:
            return {"tuple": [walk(v, path + (i,)) for i, v in enumerate(obj)]}
        if type(obj) is bytes:
            return {"bytes": base64.b64encode(obj).decode("ascii")}
        if isinstance(obj, np.generic) and type(obj).__module__ == "numpy" and obj.dtype.kind in "biufc":
            return {"np_scalar": obj.dtype.str, "hex": obj.tobytes().hex()}
        torch_node = _torch_scalar_node(obj)
        if torch_node is not None:
            return torch_node
        return refuse_or_pickle(obj, path, f"a {_type_name(obj)}")

    def _plain(obj: object, path: tuple) -> object:
        skeleton_len = len(leaves)
        node = walk(obj, path + ("_metadata",))
        if len(leaves) != skeleton_len:
            raise TPDEError("a state_dict's _metadata holds arrays", "unsupported_type")
        return node

    try:
        return walk(state, ()), leaves
    finally:
        # walk and walk_object refer to each other through their closure cells, a cycle that
        # also holds `leaves`: broken here, the caller's arrays are freed as soon as the
        # caller drops them, not when the cyclic collector next runs (pack held a whole
        # extra state at times)
        walk = walk_object = None  # noqa: F841


def unflatten_state(
    node: object,
    arrays: Mapping[str, object],
    *,
    unpickle: Callable[[str], object],
) -> object:
    """Rebuild the state from its skeleton; `arrays` maps names to loaded arrays and
    `unpickle(name)` returns a pickled leaf's object (or raises). A skeleton read from a
    store is untrusted: one that is malformed or nested deeper than MAX_DEPTH raises
    TPDEError("corrupt")."""
    try:
        return _rebuild(node, arrays, unpickle, 0)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError, struct.error) as e:
        if isinstance(e, TPDEError):
            raise
        raise TPDEError(f"the stored state skeleton is malformed ({type(e).__name__}: {_short(e)})",
                        "corrupt") from None


def _rebuild(node: object, arrays: Mapping[str, object], unpickle: Callable[[str], object], depth: int) -> object:
    if not isinstance(node, dict):
        if isinstance(node, list):
            raise TPDEError("the stored state skeleton has a bare JSON list", "corrupt")
        return node
    if depth > MAX_DEPTH:
        raise TPDEError(f"the stored state skeleton is nested deeper than {MAX_DEPTH} levels", "corrupt")
    (tag, value), *_ = node.items()

    def sub(child: object) -> object:
        return _rebuild(child, arrays, unpickle, depth + 1)

    if tag in ("array", "alias"):
        return arrays[value]
    if tag in ("dict", "odict"):
        items = [(_stored_key(k), sub(v)) for k, v in value]
        if tag == "dict":
            return dict(items)
        out = OrderedDict(items)
        if "meta" in node:
            out._metadata = sub(node["meta"])
        return out
    if tag == "list":
        return [sub(v) for v in value]
    if tag == "tuple":
        return tuple(sub(v) for v in value)
    if tag == "float":
        if "bits" in node:
            return struct.unpack(">d", bytes.fromhex(node["bits"]))[0]
        number = float(value)
        if math.isfinite(number):
            raise TPDEError(f"the stored state skeleton has a float node of {value!r}", "corrupt")
        return number
    if tag == "bytes":
        return base64.b64decode(value, validate=True)
    if tag == "np_scalar":
        dtype, raw = np.dtype(value), bytes.fromhex(node["hex"])
        if dtype.kind not in "biufc" or dtype.itemsize != len(raw):
            raise TPDEError(f"the stored state skeleton has a numpy scalar of dtype {value!r} "
                            f"and {len(raw)} bytes", "corrupt")
        return np.frombuffer(raw, dtype=dtype)[0]
    if tag == "pickle":
        return unpickle(value)
    if tag in ("size", "torch_dtype", "torch_device"):
        import torch

        if tag == "size":
            return torch.Size(value)
        if tag == "torch_device":
            return torch.device(value)
        dtype = getattr(torch, value, None) if isinstance(value, str) else None
        if not isinstance(dtype, torch.dtype):
            raise TPDEError(f"the stored state skeleton names no torch dtype {value!r}", "corrupt")
        return dtype
    raise TPDEError(f"unknown node {_short(tag)} in a stored state skeleton", "corrupt")


def _stored_key(key: object) -> object:
    if type(key) not in (str, int):
        raise TPDEError(f"the stored state skeleton has a dict key of type {type(key).__name__}", "corrupt")
    return key


def _where(path: tuple) -> str:
    """A path for messages, ascii-escaped (keys may hold anything)."""
    return ascii("/".join(map(str, path)) or "<root>")


def _short(value: object, limit: int = 60) -> str:
    text = ascii(value) if isinstance(value, str) else ascii(str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _check_text(key: object, path: tuple) -> None:
    if type(key) is str:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise TPDEError(f"key {_short(key)} at {_where(path)} holds a lone surrogate, which is not text "
                            "(and no file or JSON name can hold it)", "invalid_argument") from None


def _is_torch_size(obj: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and type(obj) is torch.Size


def _torch_scalar_node(obj: object) -> dict | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    if isinstance(obj, torch.dtype):
        return {"torch_dtype": str(obj).removeprefix("torch.")}
    if isinstance(obj, torch.device):
        return {"torch_device": str(obj)}
    return None
