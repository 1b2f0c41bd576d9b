"""calibration_sheet: the two-page sheet for measuring a printer's back offset (spec §9).

Print it duplex, hold it to a light and find the back square that sits exactly behind
its front square; its red label is the (x, y) offset for offset_pdf. Unlike the
original, the tabloid sheet is portrait like tabloid card sheets, so the measured
offset is in the same axes as the sheets it will be applied to (spec §0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from app.cards.layouts import LABEL_ASCENT_PX, LABEL_FONT_PT, PT_PER_PX, get_paper
from app.cards.pdf import Content, SheetWriter, text_width
from app.cards.placement import rect_pt
from app.cards.progress import Progress, ProgressCallback

PITCH_PX = 100
SQUARE_PX = 26            # the original's 25-px box with inclusive end coordinates
BLUE, BLACK, RED = (0, 0, 255), (0, 0, 0), (255, 0, 0)
OFFSET_FONT_PX = 25
# Arial's (ascent - descent) / 2 in em: where Pillow's middle anchor sits above the baseline.
_MIDDLE_EM = (1854 - 434) / 2 / 2048


@dataclass(frozen=True)
class Grid:
    count_x: int
    count_y: int
    start_x: int
    start_y: int

    @property
    def centre(self) -> tuple[int, int]:
        return self.count_x // 2, self.count_y // 2

    def square(self, i: int, j: int) -> tuple[int, int]:
        return self.start_x + PITCH_PX * i, self.start_y + PITCH_PX * j


def grid_for(width_px: int, height_px: int) -> Grid:
    nx, ny = width_px // PITCH_PX - 6, height_px // PITCH_PX - 6
    return Grid(nx, ny, _start(width_px, nx), _start(height_px, ny))


def _start(size: int, count: int) -> int:
    half = count // 2
    gap, box = PITCH_PX - 25, 25
    if count % 2:
        start = size // 2 - half * gap - (half + 0.5) * box
    else:
        start = size // 2 - (half - 0.5) * gap - half * box
    return math.trunc(start)


def calibration_sheet(*, paper_size: str, output, progress: ProgressCallback | None = None) -> Path:
    """Write the front/back calibration PDF for `paper_size` to `output`."""
    report = Progress(progress)
    paper = get_paper(paper_size)
    width, height = paper.width_px, paper.height_px
    height_pt = paper.size_pt[1]
    grid = grid_for(width, height)
    hx, hy = grid.centre
    writer = SheetWriter(title=f"calibration {paper_size}")

    for role in ("front", "back"):
        content = Content()
        for i in range(grid.count_x):
            for j in range(grid.count_y):
                x, y = grid.square(i, j)
                if role == "back":
                    x, y = x + i - hx, y + j - hy
                colour = BLUE if i == hx or j == hy else BLACK
                content.fill_rect(*rect_pt((x, y, x + SQUARE_PX, y + SQUARE_PX), height_pt), colour)
                if role == "back":
                    _centred(content, f"({i - hx}, {j - hy})", x + 12, y + 42, height_pt)
        # Same anchor rule as the sheet label, measured from the real page (spec §9).
        size = LABEL_FONT_PT
        right = (width - 180) * PT_PER_PX
        baseline = height_pt - (height - 180 + LABEL_ASCENT_PX) * PT_PER_PX
        content.text("F1", size, right - text_width(role, size), baseline, role)
        writer.add_page(paper.size_pt, content, role=role, text=True)
        report(0.5 if role == "front" else 0.9, f"Drew the {role} page")

    writer.write(output)
    report(1.0, "Done")
    return Path(output)


def _centred(content: Content, text: str, cx: float, cy: float, height_pt: float) -> None:
    size = OFFSET_FONT_PX * PT_PER_PX
    baseline_px = cy + _MIDDLE_EM * OFFSET_FONT_PX
    x = cx * PT_PER_PX - text_width(text, size) / 2
    content.text("F1", size, x, height_pt - baseline_px * PT_PER_PX, text, RED)
