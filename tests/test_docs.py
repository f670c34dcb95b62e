"""The user documentation speaks about the software, not about how it was developed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: development-history wording (a "calibration session" of an experiment is a domain term, so in
#: docs/ only numbered or deictic sessions count; the README avoids the word altogether)
HISTORY = [r"\bsession[- ]?\d", r"\b(this|that|last|previous|next|each|every|any) session\b", r"\bsessions\b",
           r"\blent\b", r"\bthis box\b", r"\bissue \d", r"\bissue'?s'? bars?\b", r"\bengineers?\b",
           r"\bso I\b", r"\bthe lead\b", r"\bI (looked|tried|found|measured|ran)\b"]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_no_development_history(path):
    text = path.read_text(encoding="utf-8")
    patterns = HISTORY + ([r"\bsession\b"] if path.name == "README.md" else [])
    hits = [(m.group(0), text.count("\n", 0, m.start()) + 1)
            for pat in patterns for m in re.finditer(pat, text, flags=re.IGNORECASE)]
    assert not hits, f"{path.name}: development-history wording at (text, line) {hits}"


def test_the_wording_check_catches_history():
    sample = "Measured in session 5 on this box; no GPU was lent (issue 4)."
    assert sum(bool(re.search(p, sample, re.IGNORECASE)) for p in HISTORY) >= 4
