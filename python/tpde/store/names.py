"""Checks on every name and number read from a store before it becomes a path.

A store may come from someone else (docs/security.md). The names tpde itself writes are
narrow: step folders and commit markers are canonical decimal numbers, tensor names are
"/"-joined components made by `escape_component` (ASCII letters, digits and "-_.~%", never
starting with "."). Anything else read from a store is refused with TPDEError("corrupt")
before a key is built from it, whether or not a file of that name exists, so the error
says nothing about files outside the store.
"""

from __future__ import annotations

import re

from ..errors import TPDEError

MAX_COMPONENT = 255  # bytes: the usual file-system name limit
MAX_NAME = 4096  # characters of a whole tensor name
MAX_DEPTH = 256  # components of a tensor name
MAX_STEP = 2**63 - 1
_COMPONENT = re.compile(r"[A-Za-z0-9_~%-][A-Za-z0-9_.~%-]*\Z")
_STEP = re.compile(r"(0|[1-9][0-9]{0,18})\Z")


def step_from_name(name: object) -> int | None:
    """The step a commit-marker or step-folder name stands for, or None when the name is
    not a canonical decimal step ("7", not "07", "+7", "٧" or "7.partial")."""
    if not isinstance(name, str) or not _STEP.match(name):
        return None
    step = int(name)
    return step if step <= MAX_STEP else None


def check_step_number(value: object, what: str) -> int | None:
    """A step number read from a store's JSON (None allowed): a non-negative int."""
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_STEP:
        raise TPDEError(f"{what} must be a step number, not {_show(value)}", "corrupt")
    return value


def name_problem(name: object) -> str | None:
    """Why `name` cannot be a tensor name of a store (None: it is fine)."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long (at most {MAX_NAME})"
    if name.startswith("/") or "\\" in name or "\0" in name:
        return "is an absolute path or holds a backslash or NUL"
    parts = name.split("/")
    if len(parts) > MAX_DEPTH:
        return f"has {len(parts)} components (at most {MAX_DEPTH})"
    for part in parts:
        if part in ("", ".", ".."):
            return f"has a component {part!r} (empty, '.' or '..')"
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT:
            return f"has a component of {len(part)} characters (at most {MAX_COMPONENT} bytes)"
        if not _COMPONENT.match(part):
            return f"has a component {_show(part)} with characters tpde never writes"
    return None


def check_tensor_name(name: object, where: str) -> str:
    """`name` if it is a valid tensor name of a store, else TPDEError("corrupt")."""
    problem = name_problem(name)
    if problem is not None:
        raise TPDEError(f"{where}: tensor name {_show(name)} {problem}; refusing to use it as a path", "corrupt")
    return name


def check_saved_name(name: str, key_path: object) -> None:
    """Refuse, before anything is written, a leaf name the store could not hold (a key
    longer than the file system's name limit after escaping)."""
    problem = name_problem(name)
    if problem is not None:
        raise TPDEError(f"cannot store the state entry at {_show(key_path)}: its escaped name {problem}",
                        "invalid_argument")


def tree_refs(tree: object) -> list[tuple[str, object]]:
    """Every (tag, name) of "array", "alias" and "pickle" nodes of a stored skeleton, walked
    without recursion (a skeleton may be deep)."""
    refs: list[tuple[str, object]] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, list):
            todo.extend(node)
        elif isinstance(node, dict):
            for tag, value in node.items():
                if tag in ("array", "alias", "pickle"):
                    refs.append((tag, value))
                else:
                    todo.append(value)
    return refs


def check_tree(tree: object, kinds: dict[str, str], step: int) -> None:
    """A step's skeleton refers only to arrays of its manifest, and {"pickle": name} only
    to arrays stored as pickles (`kinds`: name -> "torch"/"numpy"/"pickle")."""
    for tag, name in tree_refs(tree):
        if not isinstance(name, str) or name not in kinds:
            raise TPDEError(f"step {step}: the state refers to {_show(name)}, which is not an array of the step",
                            "corrupt")
        if (tag == "pickle") != (kinds[name] == "pickle"):
            raise TPDEError(f"step {step}: the state's {tag} node {_show(name)} points at a {kinds[name]} array",
                            "corrupt")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
