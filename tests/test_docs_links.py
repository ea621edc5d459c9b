"""Relative links in the project's Markdown files point at files that exist (the notes and
the specifications moved once; a dead link is the first thing a newcomer meets)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?:#[^)\s]*)?\)")


def _markdown_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        return [ROOT / line for line in out.stdout.splitlines()]
    return sorted(p for p in ROOT.rglob("*.md") if "build" not in p.parts and ".cache" not in p.parts)


def test_relative_links_resolve():
    files = _markdown_files()
    assert any(f.name == "store-format.md" for f in files)
    dead = []
    for path in files:
        for match in LINK.finditer(path.read_text()):
            target = match.group("target")
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                dead.append(f"{path.relative_to(ROOT)}: {target}")
    assert dead == []
