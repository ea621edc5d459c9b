"""One source for the version: pyproject.toml's `version`, which the C++ core (through CMake),
the package and CHANGELOG.md all repeat."""

import re
from pathlib import Path

import tpde
from tpde import _core

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_version() -> str:
    match = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert match, "pyproject.toml has no version line"
    return match.group(1)


def test_versions_agree():
    assert tpde.__version__ == _core.__version__ == _pyproject_version()


def test_changelog_has_an_entry_for_the_version():
    assert f"## [{_pyproject_version()}]" in (ROOT / "CHANGELOG.md").read_text()


def test_changelog_entry_names_the_formats_the_version_writes():
    """CHANGELOG.md's rule: a new chunk or store format version comes with a new package
    version whose entry says which formats it writes."""
    from tpde.store.schema import READABLE_FORMATS

    text = (ROOT / "CHANGELOG.md").read_text()
    entry = text.split(f"## [{_pyproject_version()}]", 1)[1].split("\n## ", 1)[0]
    writes = " ".join(entry.split("- Writes ", 1)[1].split("\n- ", 1)[0].split())
    chunk, _, store = writes.partition("store format")
    assert str(_core.FORMAT_VERSION) in re.findall(r"\d+", chunk), writes
    assert str(max(READABLE_FORMATS)) in re.findall(r"\d+", store), writes
