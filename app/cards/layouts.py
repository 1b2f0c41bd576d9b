"""Sheet geometry: paper sizes, registration marks, card slots (spec: card-format.md).

Every number is in pixels at 300 ppi with the origin at the page's top-left corner,
y growing downwards, exactly as the spec tables give them. Conversion to PDF points
happens only when drawing (`PT_PER_PX`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import NotRequired, TypedDict

from app.cards.errors import CardError

PT_PER_PX = 72 / 300

CARD_SIZES: dict[str, tuple[int, int]] = {
    "standard": (742, 1036),
    "japanese": (694, 1015),
    "poker": (748, 1049),
    "poker_half": (524, 733),
    "bridge": (673, 1049),
    "bridge_square": (673, 673),
    "domino": (524, 1049),
    "domino_square": (524, 524),
}


class _PaperSpec(TypedDict):
    page: tuple[int, int]
    label: tuple[int, int]
    label_align: NotRequired[str]
    marks: tuple[tuple[float, float, float, float], ...]


# Label: the text's right end (x) and its ascender line (y). The original derives them
# from the layout file's width/height, not the page (spec §6). Tabloid is the exception:
# the original puts its label off the page, and the spot the spec suggests instead
# (letter's distance from the bottom-right corner) lies on top of tabloid's bottom-right
# L mark, so there the label starts 180 px from the left edge in the corner without a mark.
# Marks: the measured rectangles of spec §3.3 (square, then each L as two bars),
# as [x0, y0, x1, y1] in continuous pixel coordinates.
_PAPERS: dict[str, _PaperSpec] = {
    "letter": {
        "page": (3300, 2550),
        "label": (3120, 2410),
        "marks": (
            (112.5, 112.5, 184.0, 184.0),
            (3092.0, 112.5, 3188.5, 125.0), (3176.0, 112.5, 3188.5, 209.0),
            (112.5, 2426.0, 209.0, 2438.5), (112.5, 2342.0, 125.0, 2438.5),
        ),
    },
    "tabloid": {
        "page": (3300, 5100),
        "label": (180, 4960),
        "label_align": "left",
        "marks": (
            (3116.59, 112.0, 3188.0, 183.4),
            (111.53, 112.0, 207.89, 124.33), (111.53, 112.0, 123.83, 208.41),
            (3091.58, 4976.18, 3188.0, 4988.49), (3175.66, 4892.12, 3188.0, 4988.49),
        ),
    },
    "a4": {
        "page": (3509, 2481),
        "label": (3328, 2340),
        "marks": (
            (112.5, 112.5, 184.0, 184.0),
            (3301.0, 112.5, 3397.5, 125.0), (3385.0, 112.5, 3397.5, 209.0),
            (112.5, 2357.5, 209.0, 2370.0), (112.5, 2273.5, 125.0, 2370.0),
        ),
    },
    "a3": {
        "page": (4960, 3508),
        "label": (4780, 3368),
        "marks": (
            (112.0, 112.0, 183.53, 183.56),
            (4754.0, 112.0, 4850.46, 124.54), (4838.0, 112.0, 4850.46, 208.56),
            (112.0, 3383.0, 208.54, 3395.45), (112.0, 3299.0, 124.53, 3395.45),
        ),
    },
    "archb": {
        "page": (5400, 3600),
        "label": (5220, 3460),
        "marks": (
            (112.0, 112.0, 183.43, 183.41),
            (5192.49, 112.0, 5289.0, 124.34), (5276.6, 112.0, 5289.0, 208.42),
            (112.0, 3476.18, 208.43, 3488.48), (112.0, 3392.12, 124.34, 3488.48),
        ),
    },
}

# (x positions, y positions, template) per paper and card size, copied from spec §2.2.
_LAYOUTS: dict[str, dict[str, tuple[tuple[int, ...], tuple[int, ...], str]]] = {
    "letter": {
        "standard": ((141, 900, 1658, 2417), (232, 1282), "letter_standard_v3"),
        "japanese": ((165, 924, 1682, 2441), (243, 1293), "letter_japanese_v1"),
        "poker": ((132, 895, 1657, 2420), (220, 1283), "letter_poker_v2"),
        "poker_half": ((265, 827, 1388, 1950, 2512), (142, 908, 1674), "letter_pokerhalf_v2"),
        "bridge": ((256, 961, 1666, 2371), (214, 1288), "letter_bridge_v2"),
        "bridge_square": ((242, 956, 1670, 2384), (221, 938, 1654), "letter_bridgesquare_v1"),
        "domino": ((245, 817, 1388, 1959, 2531), (205, 1296), "letter_domino_v1"),
        "domino_square": ((256, 823, 1388, 1954, 2520), (167, 731, 1295, 1859),
                          "letter_dominosquare_v1"),
    },
    "tabloid": {
        "standard": ((140, 898, 1657, 2416), (457, 1507, 2556, 3606), "tabloid_standard_v1"),
        "poker": ((131, 894, 1656, 2419), (432, 1494, 2557, 3619), "tabloid_poker_v1"),
        "bridge": ((255, 960, 1665, 2370), (416, 1489, 2562, 3635), "tabloid_bridge_v1"),
        "domino_square": ((260, 824, 1388, 1952, 2515),
                          (307, 873, 1439, 2005, 2571, 3137, 3703, 4269),
                          "tabloid_dominosquare_v1"),
    },
    "a4": {
        "standard": ((245, 1004, 1763, 2522), (197, 1247), "a4_standard_v2"),
        "japanese": ((269, 1028, 1786, 2545), (208, 1258), "a4_japanese_v1"),
        "poker": ((236, 999, 1761, 2524), (185, 1248), "a4_poker_v1"),
        "poker_half": ((368, 930, 1492, 2054, 2616), (120, 873, 1626), "a4_pokerhalf_v1"),
        "bridge": ((359, 1064, 1769, 2475), (179, 1252), "a4_bridge_v1"),
    },
    "a3": {
        "standard": ((212, 971, 1730, 2489, 3248, 4007), (185, 1235, 2285), "a3_standard_v1"),
    },
    "archb": {
        "standard": ((300, 1111, 1923, 2735, 3546, 4357), (211, 1281, 2352), "archb_standard_v1"),
    },
}

# Pillow rendered the original's 40-px Arial with a 37-px ascent; the baseline sits
# that far below the label's ascender line (spec §6).
LABEL_ASCENT_PX = 37
LABEL_FONT_PT = 9.6


@dataclass(frozen=True)
class Paper:
    name: str
    width_px: int
    height_px: int
    label_x_px: int                  # right end of the text, or its left end if label_align is "left"
    label_baseline_px: int
    label_align: str
    marks: tuple[tuple[float, float, float, float], ...]

    @property
    def size_pt(self) -> tuple[float, float]:
        return self.width_px * PT_PER_PX, self.height_px * PT_PER_PX


@dataclass(frozen=True)
class Layout:
    paper: Paper
    card_size: str
    card_w: int
    card_h: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]
    template: str

    @property
    def cols(self) -> int:
        return len(self.xs)

    @property
    def rows(self) -> int:
        return len(self.ys)

    @property
    def slots(self) -> int:
        return self.cols * self.rows

    def slot_origin(self, slot: int) -> tuple[int, int]:
        """Top-left corner of a slot (row-major index, row 0 at the top)."""
        row, col = divmod(slot, self.cols)
        return self.xs[col], self.ys[row]

    def mirror(self, slot: int) -> int:
        """Slot that sits behind `slot` once the sheet is turned over top-to-bottom."""
        row, col = divmod(slot, self.cols)
        return (self.rows - 1 - row) * self.cols + col

    @cached_property
    def bleed(self) -> tuple[int, int]:
        """Bleed (x, y) in px: half the first gap, rounded up (spec §4.1).

        A single row or column has no gap to halve; it borrows the other axis's
        bleed, clipped to its own page margin, so it never runs off the page.
        """
        bx = _half_gap(self.xs, self.card_w)
        by = _half_gap(self.ys, self.card_h)
        if bx is None:
            bx = min(by or 0, _margin(self.xs, self.card_w, self.paper.width_px))
        if by is None:
            by = min(bx or 0, _margin(self.ys, self.card_h, self.paper.height_px))
        return bx, by


def _half_gap(positions: tuple[int, ...], size: int) -> int | None:
    if len(positions) < 2:
        return None
    first, second = sorted(positions)[:2]
    return max(0, math.ceil((second - first - size) / 2))


def _margin(positions: tuple[int, ...], size: int, page: int) -> int:
    return max(0, min(min(positions), page - max(positions) - size))


PAPERS: dict[str, Paper] = {
    name: Paper(
        name=name,
        width_px=data["page"][0],
        height_px=data["page"][1],
        label_x_px=data["label"][0],
        label_baseline_px=data["label"][1] + LABEL_ASCENT_PX,
        label_align=data.get("label_align", "right"),
        marks=data["marks"],
    )
    for name, data in _PAPERS.items()
}

LAYOUTS: dict[tuple[str, str], Layout] = {
    (paper, card): Layout(PAPERS[paper], card, *CARD_SIZES[card], xs, ys, template)
    for paper, cards in _LAYOUTS.items()
    for card, (xs, ys, template) in cards.items()
}


def get_paper(paper_size: str) -> Paper:
    try:
        return PAPERS[paper_size]
    except (KeyError, TypeError):
        raise CardError(
            f"unknown paper size {paper_size!r}; supported: {', '.join(PAPERS)}"
        ) from None


def get_layout(paper_size: str, card_size: str) -> Layout:
    """The layout for a paper/card pair, or a CardError naming what is supported."""
    get_paper(paper_size)
    if card_size not in CARD_SIZES:
        raise CardError(
            f"unknown card size {card_size!r}; supported: {', '.join(CARD_SIZES)}"
        )
    layout = LAYOUTS.get((paper_size, card_size))
    if layout is None:
        cards = ", ".join(_LAYOUTS[paper_size])
        papers = ", ".join(p for p, c in LAYOUTS if c == card_size)
        raise CardError(
            f"card size {card_size!r} is not available on {paper_size!r} paper; "
            f"{paper_size} supports: {cards}; {card_size} is available on: {papers}"
        )
    return layout


def supported_layouts() -> list[dict]:
    """One row per supported paper x card combination, in table order."""
    rows = []
    for (paper, card), layout in LAYOUTS.items():
        rows.append({
            "paper_size": paper,
            "card_size": card,
            "cols": layout.cols,
            "rows": layout.rows,
            "cards_per_sheet": layout.slots,
            "card_px": [layout.card_w, layout.card_h],
            "card_mm": [round(layout.card_w * 25.4 / 300, 2), round(layout.card_h * 25.4 / 300, 2)],
            "page_px": [layout.paper.width_px, layout.paper.height_px],
            "bleed_px": list(layout.bleed),
            "template": layout.template,
        })
    return rows
