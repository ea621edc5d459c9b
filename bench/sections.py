"""Tagged sections of the bench's results files: each bench rewrites only its own
`<!-- tag -->` ... `<!-- /tag -->` block, so results of other benches stay as they are."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def head_commit() -> str:
    """The short hash of the checkout's HEAD (what a figure was measured at)."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=HERE).stdout.strip()


def write_section(path: Path, tag: str, text: str) -> None:
    """Replace the `tag` block of `path` with `text` (a whole block), or append it."""
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"<!-- {tag} -->\n.*?<!-- /{tag} -->\n?", re.S)
    path.write_text(pattern.sub(lambda _m: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text)
