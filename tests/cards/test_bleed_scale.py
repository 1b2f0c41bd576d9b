"""No image placement is magnified beyond what its own pixels need (issue 7).

Read from the content streams: for every `Do` of an image, the drawn size (the unit
square under the current matrix, in 300-dpi pixels) divided by the image's pixel size,
per axis. The bound: at most max(bleed) + extend-corners + 1 on either axis, and the
drawn area per image pixel at most the same. A card image drawn at about its own size
gives ~1, a one-pixel strip stretched across the bleed gives the bleed's width; the
old way (the whole image magnified until half a pixel covers the bleed) gave 18-2000.
"""
from __future__ import annotations

import math

import pytest

from app.cards import generate_sheets
from tests.cards.helpers import SPEC_LAYOUTS, drawn_images, gradient_card

PX_PER_PT = 300 / 72
OPTIONS = {"plain": {}, "crop": {"crop": "3mm"}, "extend": {"extend_corners": 10}}


def placements(pdf):
    """(image width px, height px, drawn width px, drawn height px) of every image drawn."""
    for _page, width, height, (a, b, c, d, _e, _f) in drawn_images(pdf):
        yield width, height, math.hypot(a, b) * PX_PER_PT, math.hypot(c, d) * PX_PER_PT


@pytest.fixture(scope="module")
def deck(tmp_path_factory):
    root = tmp_path_factory.mktemp("deck")
    for folder, number in (("fronts", 1), ("fronts", 2), ("backs", 3)):
        (root / folder).mkdir(exist_ok=True)
        gradient_card(number).save(root / folder / f"card{number}.png", compress_level=1)
    return root


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("spec", SPEC_LAYOUTS, ids=lambda s: f"{s.paper}-{s.card}")
def test_no_placement_is_magnified_beyond_the_bleed(deck, tmp_path, spec, option):
    out = tmp_path / "out.pdf"
    generate_sheets(front_dir=deck / "fronts", back_dir=deck / "backs", output=out,
                    paper_size=spec.paper, card_size=spec.card, **OPTIONS[option])
    bound = max(spec.bleed) + OPTIONS[option].get("extend_corners", 0) + 1
    seen = 0
    for width, height, drawn_w, drawn_h in placements(out):
        seen += 1
        scale_x, scale_y = drawn_w / width, drawn_h / height
        assert scale_x <= bound and scale_y <= bound, (width, height, drawn_w, drawn_h)
        assert scale_x * scale_y <= bound, (width, height, drawn_w, drawn_h)
    # 2 cards on the front and a full sheet of backs, each drawn as card + 4 strips
    assert seen == 5 * (2 + spec.slots)


@pytest.mark.parametrize("kind", ["common back", "double-sided"])
def test_lossless_backs_are_stored_turned_not_mirrored_by_the_matrix(tmp_path, kind):
    """poppler draws an image under a mirroring matrix through its slow general path (15 %
    slower per back page): a PNG shown only on back pages is stored turned 180° instead,
    so every placement on every page has a positive scale and no rotation. The pixels a
    renderer shows are the same (test_sheets.test_back_is_mirrored_and_turned)."""
    for folder in ("fronts", "backs"):
        (tmp_path / folder).mkdir()
    for number in (1, 2):
        gradient_card(number).save(tmp_path / "fronts" / f"card{number}.png")
        gradient_card(number + 10).save(tmp_path / "backs" / f"card{number}.png")
    out = tmp_path / "out.pdf"
    where = {"back_dir": tmp_path / "backs"} if kind == "common back" else {
        "double_sided_dir": tmp_path / "backs"}
    if kind == "common back":
        (tmp_path / "backs" / "card2.png").unlink()
    generate_sheets(front_dir=tmp_path / "fronts", output=out, **where)
    pages = set()
    for page, _w, _h, (a, b, c, d, _e, _f) in drawn_images(out):
        pages.add(page)
        assert a > 0 and d > 0 and b == 0 and c == 0, (page, (a, b, c, d))
    assert pages == {0, 1}
