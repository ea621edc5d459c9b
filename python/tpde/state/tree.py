"""Nested checkpoint state <-> (JSON skeleton, named array leaves).

A state is what training code passes to `torch.save`: dicts (with str or int keys),
OrderedDicts (a module's `state_dict`, whose `_metadata` is kept), lists, tuples, arrays
and JSON-able scalars. `flatten_state` replaces every array by a reference to its *name*,
the path of keys joined by "/" ("optimizer/state/0/exp_avg"), and returns the arrays
apart; `unflatten_state` puts them back. Scalars keep their exact Python type and value.

Skeleton nodes: JSON null/bool/int/str/finite float stand for themselves; anything else is
a one-key object: {"dict": [[key, node], ...]}, {"odict": [...], "meta": node},
{"list": [...]}, {"tuple": [...]}, {"size": [...]}, {"float": "nan"}, {"bytes": base64},
{"torch_dtype": name}, {"torch_device": name}, {"np_scalar": dtype, "hex": raw bytes},
{"array": name}, {"alias": name} (same tensor as an earlier array) and {"pickle": name}
(an object pickled into a uint8 array, only with allow_pickle).
"""

from __future__ import annotations

import base64
import math
import pickle
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np

from ..errors import TPDEError

_SAFE = "-_."


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

    def leaf_name(path: tuple) -> str:
        name = "/".join(escape_component(k) for k in path) if path else "%"
        if name in names:
            raise TPDEError(
                f"two entries of the state map to the same name {name!r} "
                "(an int key and a str key with the same digits?)",
                "invalid_argument",
            )
        names.add(name)
        return name

    def refuse_or_pickle(obj: object, path: tuple, why: str) -> dict:
        where = "/".join(map(str, path)) or "<root>"
        if not allow_pickle:
            raise TPDEError(
                f"cannot store {why} at {where!r}; tpde stores tensors, arrays, dicts, lists, "
                "tuples and JSON scalars (pass allow_pickle=True to pickle other objects)",
                "unsupported_type",
            )
        name = leaf_name(path)
        leaves.append(Leaf(name, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), True))
        return {"pickle": name}

    def walk(obj: object, path: tuple) -> object:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if type(obj) is int:
            return obj
        if type(obj) is float:
            return obj if math.isfinite(obj) else {"float": repr(obj)}
        if is_array(obj):
            key = alias_key(obj)
            if key in seen:
                return {"alias": seen[key]}
            name = leaf_name(path)
            seen[key] = name
            leaves.append(Leaf(name, obj))
            return {"array": name}
        if isinstance(obj, Mapping):
            bad = [k for k in obj if not isinstance(k, (str, int)) or isinstance(k, bool)]
            if bad:
                return refuse_or_pickle(obj, path, f"a dict with a {type(bad[0]).__name__} key")
            items = [[k, walk(v, path + (k,))] for k, v in obj.items()]
            if isinstance(obj, OrderedDict):
                node = {"odict": items}
                meta = getattr(obj, "_metadata", None)
                if meta is not None:
                    node["meta"] = _plain(meta, path)
                return node
            return {"dict": items}
        if isinstance(obj, list):
            return {"list": [walk(v, path + (i,)) for i, v in enumerate(obj)]}
        if _is_torch_size(obj):
            return {"size": list(obj)}
        if isinstance(obj, tuple):
            return {"tuple": [walk(v, path + (i,)) for i, v in enumerate(obj)]}
        if isinstance(obj, bytes):
            return {"bytes": base64.b64encode(obj).decode("ascii")}
        if isinstance(obj, np.generic) and obj.dtype.kind in "biufc":
            return {"np_scalar": obj.dtype.str, "hex": obj.tobytes().hex()}
        torch_node = _torch_scalar_node(obj)
        if torch_node is not None:
            return torch_node
        return refuse_or_pickle(obj, path, f"a {type(obj).__module__}.{type(obj).__qualname__}")

    def _plain(obj: object, path: tuple) -> object:
        skeleton_len = len(leaves)
        node = walk(obj, path + ("_metadata",))
        if len(leaves) != skeleton_len:
            raise TPDEError("a state_dict's _metadata holds arrays", "unsupported_type")
        return node

    return walk(state, ()), leaves


def unflatten_state(
    node: object,
    arrays: Mapping[str, object],
    *,
    unpickle: Callable[[str], object],
) -> object:
    """Rebuild the state from its skeleton; `arrays` maps names to loaded arrays and
    `unpickle(name)` returns a pickled leaf's object (or raises)."""
    if not isinstance(node, dict):
        return node
    (tag, value), *_ = node.items()
    if tag in ("array", "alias"):
        return arrays[value]
    if tag == "dict":
        return {k: unflatten_state(v, arrays, unpickle=unpickle) for k, v in value}
    if tag == "odict":
        out = OrderedDict((k, unflatten_state(v, arrays, unpickle=unpickle)) for k, v in value)
        if "meta" in node:
            out._metadata = unflatten_state(node["meta"], arrays, unpickle=unpickle)
        return out
    if tag == "list":
        return [unflatten_state(v, arrays, unpickle=unpickle) for v in value]
    if tag == "tuple":
        return tuple(unflatten_state(v, arrays, unpickle=unpickle) for v in value)
    if tag == "float":
        return float(value)
    if tag == "bytes":
        return base64.b64decode(value)
    if tag == "np_scalar":
        return np.frombuffer(bytes.fromhex(node["hex"]), dtype=np.dtype(value))[0]
    if tag == "pickle":
        return unpickle(value)
    if tag in ("size", "torch_dtype", "torch_device"):
        import torch

        if tag == "size":
            return torch.Size(value)
        return getattr(torch, value) if tag == "torch_dtype" else torch.device(value)
    raise TPDEError(f"unknown node {tag!r} in a stored state skeleton", "corrupt")


def _is_torch_size(obj: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Size)


def _torch_scalar_node(obj: object) -> dict | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    if isinstance(obj, torch.dtype):
        return {"torch_dtype": str(obj).removeprefix("torch.")}
    if isinstance(obj, torch.device):
        return {"torch_device": str(obj)}
    return None
