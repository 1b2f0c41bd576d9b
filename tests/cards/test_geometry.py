"""Rendered geometry of every supported layout against the spec's numbers, at 300 dpi.

Each slot gets a card of its own solid colour and the sheet a solid common back, so
every rendered pixel can be attributed to a slot, a mark or the paper. Expectations
come from the spec's JSON (tests/cards/spec_layouts.json), not from app.cards.
"""
from __future__ import annotations

import numpy as np
import pytest

from app.cards import generate_sheets
from app.cards.layouts import PAPERS
from tests.cards.helpers import (
    PALETTE,
    SPEC_LAYOUTS,
    SpecLayout,
    bbox,
    classify,
    edge_band,
    render,
    solid_png,
)

BACK_COLOUR = PALETTE[-1]
IDS = [f"{s.paper}-{s.card}" for s in SPEC_LAYOUTS]


def expected_slots(spec: SpecLayout, *, back: bool) -> np.ndarray:
    """Slot index per pixel: card + bleed rectangles painted in slot order (spec §4.3);
    on the back every slot's back sits in the mirrored row (spec §5.4)."""
    width, height = spec.page
    out = np.full((height, width), -1, np.int16)
    for slot in range(spec.slots):
        x0, y0, x1, y1 = spec.rect(spec.mirror(slot) if back else slot)
        out[y0:y1, x0:x1] = 0 if back else slot
    return out


def label_box(spec: SpecLayout) -> tuple[slice, slice]:
    """Where the label's ink may be (it may overprint cards, spec §6)."""
    paper = PAPERS[spec.paper]
    rows = slice(paper.label_baseline_px - 45, paper.label_baseline_px + 15)
    if paper.label_align == "right":
        return rows, slice(paper.label_x_px - 1100, paper.label_x_px + 5)
    return rows, slice(paper.label_x_px - 5, paper.label_x_px + 1100)


def ink(arr: np.ndarray) -> np.ndarray:
    """More-than-half-covered black: grey levels below 128 (card colours are never grey)."""
    return (arr[..., 0] == arr[..., 1]) & (arr[..., 1] == arr[..., 2]) & (arr[..., 0] < 128)


def _run(line: np.ndarray, inside: int) -> tuple[int, int]:
    """[start, end) of the run of True values in `line` that contains index `inside`."""
    assert line[inside], "no ink where the mark should be"
    start, end = inside, inside
    while start > 0 and line[start - 1]:
        start -= 1
    while end < len(line) and line[end]:
        end += 1
    return start, end


def _grow(mask: np.ndarray) -> np.ndarray:
    """Mask plus its 8 neighbours."""
    grown = mask.copy()
    grown[1:, :] |= mask[:-1, :]
    grown[:-1, :] |= mask[1:, :]
    rows = grown.copy()
    grown[:, 1:] |= rows[:, :-1]
    grown[:, :-1] |= rows[:, 1:]
    return grown


def check_marks(arr: np.ndarray, spec: SpecLayout) -> None:
    """Each of the five rectangles of the three marks within 1 px, and no other ink."""
    dark = ink(arr)
    expected = np.zeros(dark.shape, bool)
    for x0, y0, x1, y1 in spec.marks:
        expected[round(y0):round(y1), round(x0):round(x1)] = True
        # Measure each edge through the middle of the bar, away from the L's corner.
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
        left, right = _run(dark[cy], cx)
        top, bottom = _run(dark[:, cx], cy)
        assert abs(left - x0) <= 1 and abs(right - x1) <= 1, ((x0, x1), (left, right))
        assert abs(top - y0) <= 1 and abs(bottom - y1) <= 1, ((y0, y1), (top, bottom))
    margin = np.ones(dark.shape, bool)
    for slot in range(spec.slots):
        x0, y0, x1, y1 = spec.rect(slot)
        margin[y0:y1, x0:x1] = False
    margin[label_box(spec)] = False
    near = np.zeros(dark.shape, bool)
    for x0, y0, x1, y1 in spec.marks:
        window = (slice(int(y0) - 3, int(y1) + 4), slice(int(x0) - 3, int(x1) + 4))
        near[window] |= _grow(expected[window])
        missing = ~dark[window] & ~_grow(~expected[window])
        assert not missing.any(), f"mark pixels missing near {(x0, y0, x1, y1)}"
    stray = dark & margin & ~near
    assert not stray.any(), f"ink outside the marks at (y, x) {np.argwhere(stray)[:3].tolist()}"


def check_slots(got: np.ndarray, expected: np.ndarray, spec: SpecLayout, *, back: bool) -> None:
    """Every pixel right except within 1 px of a rectangle edge; every rectangle within 1 px."""
    outside_label = np.ones(expected.shape, bool)
    outside_label[label_box(spec)] = False
    wrong = (got != expected) & outside_label & ~edge_band(expected)
    assert not wrong.any(), f"{wrong.sum()} pixels off, e.g. (y, x) {np.argwhere(wrong)[:3].tolist()}"
    rects = [spec.rect(s) for s in range(spec.slots)]
    if back:
        rects = [(min(r[0] for r in rects), min(r[1] for r in rects),
                  max(r[2] for r in rects), max(r[3] for r in rects))]
    for value, (x0, y0, x1, y1) in enumerate(rects):
        window = (slice(max(0, y0 - 5), y1 + 5), slice(max(0, x0 - 5), x1 + 5))
        want = bbox((expected[window] == value) & outside_label[window])
        have = bbox((got[window] == value) & outside_label[window])
        assert have is not None, f"slot {value} missing"
        assert np.abs(np.subtract(have, want)).max() <= 1, (value, have, want)


@pytest.fixture(scope="module")
def sheets(tmp_path_factory):
    """One 2-page PDF (front + common back) per layout, built on first use."""
    built = {}

    def get(spec: SpecLayout):
        if spec not in built:
            root = tmp_path_factory.mktemp(f"{spec.paper}-{spec.card}")
            for slot in range(spec.slots):
                solid_png(root / "fronts" / f"card{slot:02d}.png", PALETTE[slot])
            solid_png(root / "backs" / "back.png", BACK_COLOUR)
            output = root / "sheet.pdf"
            result = generate_sheets(front_dir=root / "fronts", back_dir=root / "backs",
                                     output=output, paper_size=spec.paper, card_size=spec.card)
            assert result.pages == 2 and result.roles == ["front", "back"]
            built[spec] = output
        return built[spec]
    return get


@pytest.mark.parametrize("spec", SPEC_LAYOUTS, ids=IDS)
def test_front_page_geometry(sheets, spec):
    arr = render(sheets(spec), 0)
    assert arr.shape[:2] == spec.page[::-1]
    check_slots(classify(arr, PALETTE[:spec.slots]), expected_slots(spec, back=False), spec, back=False)
    check_marks(arr, spec)


@pytest.mark.parametrize("spec", SPEC_LAYOUTS, ids=IDS)
def test_back_page_geometry(sheets, spec):
    arr = render(sheets(spec), 1)
    check_slots(classify(arr, [BACK_COLOUR]), expected_slots(spec, back=True), spec, back=True)
    check_marks(arr, spec)
    assert not ink(arr[label_box(spec)]).any()       # no label on backs
