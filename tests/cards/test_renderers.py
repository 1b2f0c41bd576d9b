"""The same sheet in every renderer: poppler, pdfium, mupdf and ghostscript at 300 dpi.

The synthetic 64-card deck (825 x 1125 gradient art) is laid out plain, with
`--crop 3mm` and with `--extend-corners 10`; pages 1 (front) and 2 (common back) are
rasterized. Each renderer must draw without a warning, put card + bleed and the marks
where the spec says within 1 px (no seams, no missing corners), and poppler and
pdfium must agree within a mean absolute difference of 2 (0-255). letter/standard
runs always; one layout per other paper size, and mupdf/ghostscript, are marked slow.
"""
from __future__ import annotations

import numpy as np
import pytest

from app.cards import generate_sheets
from app.cards.layouts import PAPERS
from tests.cards.helpers import SpecLayout, synthetic_deck
from tests.cards.renderers import RENDERERS

OPTIONS = {"plain": {}, "crop": {"crop": "3mm"}, "extend": {"extend_corners": 10}}
MAX_MEAN_DIFF = 2.0
LETTER = SpecLayout("letter", "standard")
OTHER_PAPERS = [SpecLayout("tabloid", "domino_square"), SpecLayout("a4", "poker_half"),
                SpecLayout("a3", "standard"), SpecLayout("archb", "standard")]


@pytest.fixture(scope="module")
def deck(tmp_path_factory):
    return synthetic_deck(tmp_path_factory.mktemp("deck"))


@pytest.fixture(scope="module")
def sheets(deck, tmp_path_factory):
    """(layout, option name) -> PDF, generated once per module."""
    made = {}
    folder = tmp_path_factory.mktemp("sheets")

    def get(spec: SpecLayout, option: str):
        key = (spec.paper, spec.card, option)
        if key not in made:
            out = folder / f"{spec.paper}-{spec.card}-{option}.pdf"
            generate_sheets(front_dir=deck / "fronts", back_dir=deck / "backs", output=out,
                            paper_size=spec.paper, card_size=spec.card, **OPTIONS[option])
            made[key] = out
        return made[key]
    return get


def expected_ink(spec: SpecLayout) -> np.ndarray:
    """Card + bleed of every slot (fronts and the common back fill them all) and the marks."""
    width, height = spec.page
    mask = np.zeros((height, width), bool)
    for slot in range(spec.slots):
        x0, y0, x1, y1 = spec.rect(slot)
        mask[y0:y1, x0:x1] = True
    for x0, y0, x1, y1 in spec.marks:
        mask[round(y0):round(y1), round(x0):round(x1)] = True
    return mask


def within_one_px(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 3 x 3 neighbourhood holds both values: where 1 px of slack is allowed."""
    grown, shrunk = mask.copy(), mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
            grown |= shifted
            shrunk &= shifted
    return grown & ~shrunk


def label_area(spec: SpecLayout) -> tuple[slice, slice]:
    paper = PAPERS[spec.paper]
    rows = slice(paper.label_baseline_px - 45, paper.label_baseline_px + 15)
    if paper.label_align == "right":
        return rows, slice(paper.label_x_px - 1100, paper.label_x_px + 5)
    return rows, slice(paper.label_x_px - 5, paper.label_x_px + 1100)


def check_geometry(arr: np.ndarray, spec: SpecLayout, front: bool, renderer: str) -> None:
    width, height = spec.page
    assert arr.shape == (height, width, 3), renderer
    ink = arr.min(axis=2) < 250            # the art never comes near white
    expected = expected_ink(spec)
    wrong = (ink != expected) & ~within_one_px(expected)
    if front:
        wrong[label_area(spec)] = False     # the label may overprint cards (spec §6)
    ys, xs = np.nonzero(wrong)
    assert len(xs) == 0, (f"{renderer}: {len(xs)} px off the spec's card + bleed / marks, "
                          f"e.g. at x={xs[:5].tolist()}, y={ys[:5].tolist()}")


def compare(pdf, spec: SpecLayout, renderers=("poppler", "pdfium")) -> None:
    for index in (0, 1):
        pages = {}
        for name in renderers:
            arr, stderr = RENDERERS[name](pdf, index)
            assert stderr.strip() == "", f"{name} page {index + 1}: {stderr[:300]}"
            check_geometry(arr, spec, front=index == 0, renderer=f"{name} page {index + 1}")
            pages[name] = arr.astype(np.int16)
        if {"poppler", "pdfium"} <= pages.keys():
            diff = float(np.abs(pages["poppler"] - pages["pdfium"]).mean())
            assert diff <= MAX_MEAN_DIFF, f"page {index + 1}: poppler vs pdfium mean diff {diff:.2f}"


@pytest.mark.parametrize("option", OPTIONS)
def test_letter_standard_poppler_and_pdfium_agree(sheets, option):
    compare(sheets(LETTER, option), LETTER)


@pytest.mark.slow
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("spec", OTHER_PAPERS, ids=lambda s: f"{s.paper}-{s.card}")
def test_every_paper_size_poppler_and_pdfium_agree(sheets, spec, option):
    compare(sheets(spec, option), spec)


@pytest.mark.slow
@pytest.mark.parametrize("option", OPTIONS)
def test_mupdf_and_ghostscript_draw_the_spec_geometry(sheets, option):
    compare(sheets(LETTER, option), LETTER, renderers=("mupdf", "ghostscript"))
