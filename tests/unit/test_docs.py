"""The docs hold together: every link between them lands on a file and a heading, the README stays
short, and they speak of the product, not of how it was made."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from conftest import DOCS, REPO

LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(path: Path) -> list[tuple[int, str]]:
    """The lines outside code blocks, numbered."""
    lines, in_code = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code:
            lines.append((number, line))
    return lines


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", re.sub(r"<[^>]+>", "", heading)).strip().lower()
    kept = (ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return "".join(kept).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    for _, line in _prose(path):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = _anchor(match.group(1))
            seen[base] = seen.get(base, -1) + 1
    return {base if n == 0 else f"{base}-{n}" for base, last in seen.items() for n in range(last + 1)}


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_every_link_lands(path):
    misses = []
    for number, line in _prose(path):
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
                continue
            file, _, fragment = target.partition("#")
            linked = path if not file else (path.parent / file).resolve()
            if not linked.exists():
                misses.append(f"{path.name}:{number}: {target}: no such file")
            elif fragment and (linked.suffix != ".md" or fragment not in _anchors(linked)):
                misses.append(f"{path.name}:{number}: {target}: no such heading")
    assert not misses, "\n".join(misses)


def test_the_readme_starts_fast():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert "## Contents" in text
    assert text.index("## Your own checkpoint") < text.index("random")  # one's own model before the demo's


PROCESS_WORDS = re.compile(r"\bissue \d|\bsession\b|\bnot drawn\b|one-off script|\.\./shared|/work/|\bcommit [0-9a-f`]",
                           re.IGNORECASE)


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_the_docs_speak_of_the_product(path):
    found = [f"{path.name}:{number}: {line.strip()}" for number, line in enumerate(path.read_text().splitlines(), 1)
             if PROCESS_WORDS.search(line)]
    assert not found, "\n".join(found)
