"""Every ```python block of README.md and docs/*.md runs as written: each alone, in a fresh
temporary folder, in a new interpreter, twice in a row there (so that a block that creates
files must also work when they exist; one interpreter runs both, each with a fresh
namespace, to pay the torch import once). A block that is deliberately not a program (an API
listing) is preceded by the line `<!-- snippet: <why it is not run> -->`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^(?P<marker><!-- snippet: .+? -->\n)?```python\n(?P<code>.*?)^```$", re.M | re.S)


TWICE = """
import sys
code = compile(sys.stdin.read(), "<block>", "exec")
for attempt in ("first", "second"):
    exec(code, {"__name__": "__main__"})
    print(attempt, "run done", flush=True)
"""


def _blocks() -> list:
    found = []
    for path in FILES:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            name = f"{path.relative_to(ROOT)}:{line}"
            if match.group("marker"):
                continue
            found.append(pytest.param(match.group("code"), id=name))
    return found


def test_the_documents_have_python_blocks():
    assert len(_blocks()) >= 7


@pytest.mark.slow
@pytest.mark.parametrize("code", _blocks())
def test_block_runs_as_written(code, tmp_path):
    result = subprocess.run([sys.executable, "-c", TWICE], input=code, cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run done") == 2


def test_illustrative_blocks_say_why():
    for path in FILES:
        for match in BLOCK.finditer(path.read_text()):
            if match.group("marker"):
                assert len(match.group("marker")) > len("<!-- snippet:  -->\n") + 5, path
