"""python/tpde/_core.pyi describes the compiled module tpde._core exactly: the same public
names, and for every function the same parameters (names, keyword-only, defaults) as its
pybind11 signature."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import tpde
from tpde import _core

STUB = Path(tpde.__file__).with_name("_core.pyi")


def _stub() -> ast.Module:
    return ast.parse(STUB.read_text())


def _stub_functions() -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in _stub().body if isinstance(n, ast.FunctionDef)}


def _stub_attributes() -> set[str]:
    return {n.target.id for n in _stub().body if isinstance(n, ast.AnnAssign)}


def _stub_types() -> set[str]:
    """Names the stub defines only for typing (aliases, TypedDicts)."""
    names = {n.name for n in _stub().body if isinstance(n, ast.ClassDef)}
    names |= {t.id for n in _stub().body if isinstance(n, ast.Assign) for t in n.targets}
    return names


def _module_names() -> set[str]:
    return {n for n in dir(_core) if not n.startswith("_")} | {"__version__"}


def test_stub_and_module_have_the_same_names():
    stub = set(_stub_functions()) | _stub_attributes()
    assert stub == _module_names(), (
        f"only in _core: {sorted(_module_names() - stub)}; only in the stub: {sorted(stub - _module_names())}"
    )
    assert not _stub_types() & set(dir(_core)), "a stub-only type name shadows a module name"


def _pybind_params(fn) -> list[tuple[str, bool, str | None]]:
    """(name, keyword-only, default text) from a pybind11 docstring's first line."""
    first = fn.__doc__.splitlines()[0]
    inside = re.fullmatch(rf"{fn.__name__}\((.*)\) -> .*", first)
    assert inside, first
    params, kw_only = [], False
    for part in re.split(r",\s*(?![^\[]*\])", inside.group(1)) if inside.group(1) else []:
        if part == "*":
            kw_only = True
            continue
        name, _, rest = part.partition(":")
        default = rest.split(" = ", 1)[1] if " = " in rest else None
        params.append((name.strip(), kw_only, default))
    return params


def _stub_params(node: ast.FunctionDef) -> list[tuple[str, bool, str | None]]:
    args = node.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    out = [(a.arg, False, d) for a, d in zip(positional, defaults)]
    out += [(a.arg, True, d) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    return [(n, kw, None if d is None else repr(ast.literal_eval(d))) for n, kw, d in out]


@pytest.mark.parametrize("name", sorted(n for n in dir(_core) if callable(getattr(_core, n)) and not n.startswith("_")))
def test_stub_signature_matches_the_binding(name):
    node = _stub_functions().get(name)
    assert node is not None, f"_core.{name} is missing from the stub"
    binding = _pybind_params(getattr(_core, name))
    expected = [(n, kw, None if d is None else repr(ast.literal_eval(d))) for n, kw, d in binding]
    assert _stub_params(node) == expected


def test_stub_attribute_types():
    assert isinstance(_core.__version__, str) and isinstance(_core.FORMAT_VERSION, int)


def test_package_is_marked_typed():
    assert STUB.with_name("py.typed").is_file()
