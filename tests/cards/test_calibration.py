"""Calibration sheet geometry (spec §9; tabloid portrait per spec §0)."""
from __future__ import annotations

import numpy as np
import pytest
from pypdf import PdfReader

from app.cards import CardError, calibration_sheet
from app.cards.calibration import grid_for
from tests.cards.helpers import page_text, render

BLACK, BLUE, RED = (0, 0, 0), (0, 0, 255), (255, 0, 0)


@pytest.mark.parametrize("size, grid, centre, first, blue", [
    ((3300, 2550), (27, 19), (13, 9), (337, 362), (1637, 1262)),       # letter
    ((5100, 3300), (45, 27), (22, 13), (337, 337), (2537, 1637)),      # tabloid, as the original
    ((3509, 2481), (29, 18), (14, 9), (341, 377), (1741, 1277)),       # a4
    ((4960, 3508), (43, 29), (21, 14), (367, 341), (2467, 1741)),      # a3
    ((5400, 3600), (48, 30), (24, 15), (337, 337), (2737, 1837)),      # archb
])
def test_grid_matches_the_spec_table(size, grid, centre, first, blue):
    g = grid_for(*size)
    assert (g.count_x, g.count_y) == grid
    assert g.centre == centre
    assert g.square(0, 0) == first
    assert g.square(*centre) == blue


def colour_at(arr, x, y):
    return tuple(int(v) for v in arr[y, x])


def test_letter_sheet(tmp_path):
    out = tmp_path / "cal.pdf"
    calibration_sheet(paper_size="letter", output=out)
    reader = PdfReader(out)
    assert len(reader.pages) == 2
    assert [float(v) for v in reader.pages[0].mediabox.upper_right] == [792, 612]
    assert page_text(out, 0) == "front"
    front, back = render(out, 0), render(out, 1)
    grid = grid_for(3300, 2550)
    hx, hy = grid.centre
    for i, j in [(0, 0), (26, 18), (5, 7), (hx, 3), (4, hy), (hx, hy)]:
        x, y = grid.square(i, j)
        want = BLUE if i == hx or j == hy else BLACK
        # a 26 x 26 px square at exactly its position
        assert colour_at(front, x, y) == want and colour_at(front, x + 25, y + 25) == want
        assert colour_at(front, x - 1, y) != want and colour_at(front, x + 26, y + 25) != want
        # on the back it is displaced by (i - hx, j - hy) px
        dx, dy = i - hx, j - hy
        assert colour_at(back, x + dx, y + dy) == want and colour_at(back, x + dx + 25, y + dy + 25) == want
        assert colour_at(back, x + dx - 1, y + dy) != want
    # squares only: 513 of them, 26 x 26 px each, on the front
    dark = (front < 128).all(axis=2) | ((front[..., 2] > 200) & (front[..., 0] < 60))
    text = np.zeros(dark.shape, bool)
    text[2300:2450, 2800:3200] = True
    assert (dark & ~text).sum() == 513 * 26 * 26
    # red offset labels on the back
    red = (back[..., 0] > 200) & (back[..., 1] < 80) & (back[..., 2] < 80)
    assert red.sum() > 513 * 20
    assert "(-13, -9)" in page_text(out, 1) and "(13, 9)" in page_text(out, 1)


def test_tabloid_sheet_is_portrait_like_tabloid_card_sheets(tmp_path):
    out = tmp_path / "cal.pdf"
    calibration_sheet(paper_size="tabloid", output=out)
    page = PdfReader(out).pages[0]
    assert [float(v) for v in page.mediabox.upper_right] == [792, 1224]
    grid = grid_for(3300, 5100)
    assert (grid.count_x, grid.count_y) == (27, 45)
    front = render(out, 0)
    x, y = grid.square(*grid.centre)
    assert colour_at(front, x + 10, y + 10) == BLUE


def test_unknown_paper():
    with pytest.raises(CardError, match="letter, tabloid"):
        calibration_sheet(paper_size="legal", output="/tmp/never.pdf")
