"""Readable job warnings: the card engine's per-image lines grouped into a few sentences,
without the internal folder names of the upload area."""
from __future__ import annotations

import re
from collections import Counter

STRETCHED = re.compile(r"^(?P<name>.+): aspect ratio \d+x\d+ differs from the (?P<card>\S+) "
                       r"card by (?P<pct>[\d.]+) %; it is stretched to fit$")
MORE_STRETCHED = re.compile(r"^\.\.\. and (?P<count>\d+) more images are stretched to fit$")
INTERNAL_PREFIXES = ("front_dir/", "double_sided_dir/", "back_dir/", "back image ")
NAMES_SHOWN = 5


def _public(text: str) -> str:
    for prefix in INTERNAL_PREFIXES:
        text = text.replace(prefix, "")
    return text


def group_warnings(warnings: list[str]) -> list[str]:
    """One line per kind of warning; repeated lines are counted, not repeated."""
    names: list[str] = []
    percents: list[float] = []
    card, extra = None, 0
    others: Counter[str] = Counter()
    for raw in warnings:
        if match := STRETCHED.match(raw):
            names.append(_public(match["name"]))
            percents.append(float(match["pct"]))
            card = match["card"]
        elif match := MORE_STRETCHED.match(raw):
            extra += int(match["count"])
        elif raw.strip():
            others[_public(raw.strip())] += 1
    lines = []
    if names:
        lines.append(_stretched_line(names, percents, card, extra))
    lines += [text if count == 1 else f"{text} (x{count})" for text, count in others.items()]
    return lines


def _stretched_line(names: list[str], percents: list[float], card: str | None,
                    extra: int) -> str:
    total = len(names) + extra
    low, high = min(percents), max(percents)
    spread = f"{low:.1f} %" if low == high else f"{low:.1f}-{high:.1f} %"
    shown = ", ".join(names[:NAMES_SHOWN])
    hidden = total - min(len(names), NAMES_SHOWN)
    if hidden:
        shown += f" and {hidden} more"
    subject = "1 image is" if total == 1 else f"{total} images are"
    return (f"{subject} stretched to fit the {card} card (aspect ratio off by {spread}): "
            f"{shown}")
