"""generate_sheets behaviour: page order, mirroring, skip, labels, bleed, images, progress."""
from __future__ import annotations

import ctypes
import hashlib
import io
import os
import re
import struct

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
import pytest
from PIL import Image
from pypdf import PdfReader

from app.cards import CardError, generate_sheets, get_layout
from tests.cards.helpers import (
    PALETTE,
    WHITE,
    classify,
    page_text,
    quadrant_image,
    render,
    solid_png,
)

LETTER = get_layout("letter", "standard")
BACK = PALETTE[-1]


def slot_colour(arr, layout, slot, fx=0.5, fy=0.5):
    x, y = layout.slot_origin(slot)
    return tuple(int(v) for v in arr[int(y + layout.card_h * fy), int(x + layout.card_w * fx)])


def slot_colours(pdf, page, layout):
    arr = render(pdf, page)
    return [slot_colour(arr, layout, slot) for slot in range(layout.slots)]


# --------------------------------------------------------------------------- page sequence

def test_double_sided_order_and_default_back(make_deck, tmp_path):
    names = ["a10", "a2", "a1", "b20", "b1", "b3"]
    colours = dict(zip(names, PALETTE))
    root = make_deck({
        "fronts": {f"{n}.png": colours[n] for n in names},
        "double": {f"{n}.png": PALETTE[10 + i] for i, n in enumerate(["b20", "b1", "b3"])},
    })
    out = tmp_path / "out.pdf"
    result = generate_sheets(front_dir=root / "fronts", double_sided_dir=root / "double", output=out)
    assert (result.pages, result.sheets, result.cards) == (4, 2, 6)
    assert result.roles == ["front", "back", "front", "back"]
    front1 = slot_colours(out, 0, LETTER)
    assert front1[:4] == [colours["a1"], colours["a2"], colours["a10"], WHITE]
    # no back image: the single-sided sheet's back is marks only (spec §5.3)
    assert set(slot_colours(out, 1, LETTER)) == {WHITE}
    front2 = slot_colours(out, 2, LETTER)
    assert front2[:4] == [colours["b1"], colours["b3"], colours["b20"], WHITE]
    back2 = slot_colours(out, 3, LETTER)
    # each back behind its front: slot s -> mirrored row, same column
    assert back2[4:8] == [PALETTE[11], PALETTE[12], PALETTE[10], WHITE]
    assert back2[:4] == [WHITE] * 4


def test_back_is_mirrored_and_turned(make_deck, tmp_path):
    """letter poker_half (5 x 3): each back lands in the mirrored row, turned 180°."""
    layout = get_layout("letter", "poker_half")
    fronts = {f"c{k:02d}.png": PALETTE[k] for k in range(15)}
    backs = {f"c{k:02d}.png": quadrant_image((PALETTE[15 + k], PALETTE[30 + k], PALETTE[45 + k], PALETTE[k]))
             for k in range(15)}
    root = make_deck({"fronts": fronts, "double": backs})
    out = tmp_path / "out.pdf"
    generate_sheets(front_dir=root / "fronts", double_sided_dir=root / "double", output=out,
                    card_size="poker_half")
    front, back = render(out, 0), render(out, 1)
    for k in range(15):
        assert slot_colour(front, layout, k) == PALETTE[k]
        slot = layout.mirror(k)
        quadrants = [slot_colour(back, layout, slot, fx, fy) for fy in (0.25, 0.75) for fx in (0.25, 0.75)]
        # turned 180°: top-left shows the image's bottom-right, and so on
        assert quadrants == [PALETTE[k], PALETTE[45 + k], PALETTE[30 + k], PALETTE[15 + k]], k


def test_common_back_fills_every_free_slot(make_deck, tmp_path):
    root = make_deck({"fronts": {f"c{k}.png": PALETTE[k] for k in range(10)}, "backs": {"back.png": BACK}})
    out = tmp_path / "out.pdf"
    result = generate_sheets(front_dir=root / "fronts", back_dir=root / "backs", output=out)
    assert result.pages == 4
    # the last sheet holds 2 cards but still gets a full set of backs (spec §5.3)
    assert slot_colours(out, 3, LETTER) == [BACK] * 8


def test_skip_leaves_slots_empty_on_both_faces(make_deck, tmp_path):
    root = make_deck({"fronts": {f"c{k}.png": PALETTE[k] for k in range(1, 8)}, "backs": {"b.png": BACK}})
    out = tmp_path / "out.pdf"
    result = generate_sheets(front_dir=root / "fronts", back_dir=root / "backs", output=out,
                             skip=[0, 5, 9, 5])
    assert any("9" in w and "ignored" in w for w in result.warnings)
    assert result.pages == 4
    front1 = slot_colours(out, 0, LETTER)
    assert front1 == [WHITE, PALETTE[1], PALETTE[2], PALETTE[3], PALETTE[4], WHITE, PALETTE[5], PALETTE[6]]
    back1 = slot_colours(out, 1, LETTER)
    # mirrors of slots 0 and 5 are slots 4 and 1
    assert [i for i, c in enumerate(back1) if c == WHITE] == [1, 4]
    assert slot_colours(out, 2, LETTER)[:2] == [WHITE, PALETTE[7]]


def test_only_fronts(make_deck, tmp_path):
    root = make_deck({"fronts": {f"c{k:02d}.png": PALETTE[k] for k in range(12)}, "backs": {"b.png": BACK}})
    out = tmp_path / "out.pdf"
    result = generate_sheets(front_dir=root / "fronts", back_dir=root / "backs", output=out, only_fronts=True)
    assert result.roles == ["front", "front"] and result.pages == 2
    assert PdfReader(out).page_labels == ["Front 1", "Front 2"]
    assert BACK not in slot_colours(out, 1, LETTER)


def test_label_on_front_pages_only(make_deck, tmp_path):
    root = make_deck({"fronts": {f"c{k:02d}.png": PALETTE[k] for k in range(9)}, "backs": {"b.png": BACK}})
    out = tmp_path / "out.pdf"
    generate_sheets(front_dir=root / "fronts", back_dir=root / "backs", output=out, name="My Deck")
    assert page_text(out, 0) == "name: My Deck, sheet: 1, template: letter_standard_v3"
    assert page_text(out, 2) == "name: My Deck, sheet: 2, template: letter_standard_v3"
    assert page_text(out, 1) == "" and page_text(out, 3) == ""
    doc = pdfium.PdfDocument(str(out))
    try:
        textpage = doc[0].get_textpage()
        last = textpage.count_chars() - 1
        x, y = ctypes.c_double(), ctypes.c_double()
        pdfium_raw.FPDFText_GetCharOrigin(textpage, 0, ctypes.byref(x), ctypes.byref(y))
        right = textpage.get_charbox(last, loose=True)[2]
    finally:
        doc.close()
    # right end at x = 3120 px, baseline at y = 2447 px from the top (spec §6)
    assert right == pytest.approx(3120 * 0.24, abs=0.24)
    assert y.value == pytest.approx(612 - 2447 * 0.24, abs=0.24)
    arr = render(out, 0)
    ink = (arr[2400:2470, 2300:3130] < 128).all(axis=2)
    assert ink.any()


def test_tabloid_label_is_on_the_page_and_clear_of_the_marks(make_deck, tmp_path):
    root = make_deck({"fronts": {"c.png": PALETTE[0]}})
    out = tmp_path / "out.pdf"
    generate_sheets(front_dir=root / "fronts", output=out, paper_size="tabloid", only_fronts=True)
    assert page_text(out, 0) == "sheet: 1, template: tabloid_standard_v1"
    arr = render(out, 0)
    dark = (arr < 128).all(axis=2)
    rows = dark[4900:5100]
    cols = np.nonzero(rows.any(axis=0))[0]
    # label ink in the bottom-left corner; the bottom-right L mark stands alone
    assert 170 <= cols.min() <= 200
    label_end = cols[cols < 3000].max()
    assert label_end < 3000 and not rows[:, label_end + 1:3091].any()


# --------------------------------------------------------------------------- bleed, crop, extend corners

def framed(size, inner, edges) -> Image.Image:
    """Image with 1-px edges: edges = (top, bottom, left, right, tl, tr, bl, br) colours."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:] = inner
    top, bottom, left, right, tl, tr, bl, br = edges
    arr[0, :], arr[-1, :], arr[:, 0], arr[:, -1] = top, bottom, left, right
    arr[0, 0], arr[0, -1], arr[-1, 0], arr[-1, -1] = tl, tr, bl, br
    return Image.fromarray(arr, "RGB")


def test_bleed_replicates_edges_and_corners(make_deck, tmp_path):
    edges = PALETTE[1:9]
    root = make_deck({"fronts": {"c.png": framed((742, 1036), PALETTE[0], edges)}})
    out = tmp_path / "out.pdf"
    generate_sheets(front_dir=root / "fronts", output=out, only_fronts=True)
    arr = render(out, 0)
    x, y, (bx, by) = 141, 232, LETTER.bleed
    w, h = 742, 1036
    got = classify(arr, PALETTE[:9])
    top, bottom, left, right, tl, tr, bl, br = range(1, 9)
    assert (got[y - by:y + 1, x + 1:x + w - 1] == top).all()
    assert (got[y + h - 1:y + h + by, x + 1:x + w - 1] == bottom).all()
    assert (got[y + 1:y + h - 1, x - bx:x + 1] == left).all()
    assert (got[y + 1:y + h - 1, x + w - 1:x + w + bx] == right).all()
    assert (got[y - by:y + 1, x - bx:x + 1] == tl).all()
    assert (got[y - by:y + 1, x + w - 1:x + w + bx] == tr).all()
    assert (got[y + h - 1:y + h + by, x - bx:x + 1] == bl).all()
    assert (got[y + h - 1:y + h + by, x + w - 1:x + w + bx] == br).all()
    assert (got[y + 1:y + h - 1, x + 1:x + w - 1] == 0).all()
    # and nothing beyond card + bleed
    assert (arr[y - by - 1, x - bx:x + w + bx] == 255).all()
    assert (arr[y:y + h, x + w + bx] == 255).all()


def test_extend_corners_hides_a_frame(make_deck, tmp_path):
    """spec §7: e=10 on a card with a 3-px frame leaves only the inner colour."""
    arr = np.zeros((1036, 742, 3), np.uint8)
    arr[:] = PALETTE[2]
    arr[3:-3, 3:-3] = PALETTE[0]
    root = make_deck({"fronts": {"c.png": Image.fromarray(arr)}})
    out = tmp_path / "out.pdf"
    generate_sheets(front_dir=root / "fronts", output=out, only_fronts=True, extend_corners=10)
    got = classify(render(out, 0), PALETTE[:3])
    bx, by = LETTER.bleed
    rect = got[232 - by:232 + 1036 + by, 141 - bx:141 + 742 + bx]
    assert (rect == 0).all()


def test_crop_removes_a_border(make_deck, tmp_path):
    arr = np.zeros((140, 100, 3), np.uint8)
    arr[:] = PALETTE[2]
    arr[14:-14, 10:-10] = PALETTE[0]
    root = make_deck({"fronts": {"c.png": Image.fromarray(arr)}, "backs": {"b.png": Image.fromarray(arr)}})
    out = tmp_path / "out.pdf"
    # 20 % in total: 10 px per side horizontally, 14 vertically
    generate_sheets(front_dir=root / "fronts", back_dir=root / "backs", output=out, crop="20")
    bx, by = LETTER.bleed
    front = classify(render(out, 0), PALETTE[:3])[232 - by:232 + 1036 + by, 141 - bx:141 + 742 + bx]
    assert (front == 0).all()
    # the common back is never cropped (spec §7): its border shows
    back = classify(render(out, 1), PALETTE[:3])
    assert (back[1282 + 5, 141 + 5:141 + 700] == 2).all()


# --------------------------------------------------------------------------- images in the PDF

def idat(png: bytes) -> bytes:
    pos, out = 8, b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            out += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    return out


def image_streams(pdf) -> dict[int, object]:
    reader = PdfReader(pdf)
    found = {}
    for page in reader.pages:
        for ref in page["/Resources"].get("/XObject", {}).values():
            obj = ref.get_object()
            if obj["/Subtype"] == "/Image":
                found[ref.idnum] = obj
    return found


def test_each_distinct_image_is_embedded_once(make_deck, tmp_path):
    fronts = {f"c{k:02d}.png": PALETTE[k] for k in range(10)}
    fronts["copy.png"] = PALETTE[3]                      # same bytes as c03.png
    root = make_deck({"fronts": fronts, "backs": {"b.png": BACK}})
    out = tmp_path / "out.pdf"
    result = generate_sheets(front_dir=root / "fronts", back_dir=root / "backs", output=out)
    assert result.pages == 4
    raw = out.read_bytes()
    streams = image_streams(out)
    cards = [obj for obj in streams.values() if min(obj["/Width"], obj["/Height"]) > 1]
    strips = [obj for obj in streams.values() if min(obj["/Width"], obj["/Height"]) == 1]
    assert len(cards) == 11 == result.images
    # four one-pixel bleed strips per distinct image, however often it is placed
    assert len(strips) == 44 and len(re.findall(rb"/Subtype /Image", raw)) == 55
    reader = PdfReader(out)
    back_refs = [{r.idnum for r in reader.pages[i]["/Resources"]["/XObject"].values()} for i in (1, 3)]
    assert back_refs[0] == back_refs[1] and len(back_refs[0]) == 5


def test_originals_are_embedded_losslessly(make_deck, tmp_path):
    rng = np.random.default_rng(1)
    art = Image.fromarray(rng.integers(0, 256, (300, 220, 3), dtype=np.uint8))
    png = io.BytesIO()
    art.save(png, "PNG")
    jpeg = io.BytesIO()
    art.save(jpeg, "JPEG", quality=90)
    root = make_deck({"fronts": {"a.png": png.getvalue(), "b.jpg": jpeg.getvalue()}})
    out = tmp_path / "out.pdf"
    generate_sheets(front_dir=root / "fronts", output=out, only_fronts=True)
    streams = {obj["/Filter"]: obj for obj in image_streams(out).values() if obj["/Height"] > 1 < obj["/Width"]}
    assert streams["/FlateDecode"]._data == idat(png.getvalue())
    assert streams["/DCTDecode"]._data == jpeg.getvalue()
    decoded = PdfReader(out).pages[0].images
    pixels = {np.asarray(img.image.convert("RGB")).tobytes() for img in decoded}
    assert np.asarray(art).tobytes() in pixels


def test_quality_below_100_recompresses_as_jpeg(make_deck, tmp_path):
    root = make_deck({"fronts": {"a.png": PALETTE[0]}})
    out = tmp_path / "out.pdf"
    generate_sheets(front_dir=root / "fronts", output=out, only_fronts=True, quality=80)
    assert [o["/Filter"] for o in image_streams(out).values() if o["/Height"] > 1 < o["/Width"]] == ["/DCTDecode"]


@pytest.mark.parametrize("ppi, width", [(300, 742), (150, 371), (600, 1484)])
def test_images_above_the_target_ppi_are_downsampled(make_deck, tmp_path, ppi, width):
    rng = np.random.default_rng(2)
    art = Image.fromarray(rng.integers(0, 256, (2800, 2000, 3), dtype=np.uint8))
    root = make_deck({"fronts": {"big.png": art}})
    out = tmp_path / "out.pdf"
    generate_sheets(front_dir=root / "fronts", output=out, only_fronts=True, ppi=ppi)
    (obj,) = [o for o in image_streams(out).values() if o["/Height"] > 1 < o["/Width"]]
    assert width <= obj["/Width"] <= width + 2
    assert obj["/Filter"] == "/FlateDecode"


def test_aspect_ratio_warning(make_deck, tmp_path):
    root = make_deck({"fronts": {"wide.png": Image.new("RGB", (825, 1125)),
                                 "exact.png": Image.new("RGB", (742, 1036), (1, 2, 3))}})
    result = generate_sheets(front_dir=root / "fronts", output=tmp_path / "o.pdf", only_fronts=True)
    assert result.warnings == ["wide.png differs from the standard card's aspect ratio by 2.4 % "
                               "and is stretched to fit"]


def test_aspect_ratio_warnings_are_one_line_with_a_count(make_deck, tmp_path):
    fronts = {f"sub/c{k:02d}.png": Image.new("RGB", (825, 1125), (k, k, k)) for k in range(63)}
    fronts["wider.png"] = Image.new("RGB", (900, 1125))
    fronts["exact.png"] = Image.new("RGB", (742, 1036))
    root = make_deck({"fronts": fronts, "backs": {"b.png": Image.new("RGB", (825, 1125), PALETTE[0])}})
    result = generate_sheets(front_dir=root / "fronts", back_dir=root / "backs", output=tmp_path / "o.pdf")
    assert result.warnings == [
        "65 images differ from the standard card's aspect ratio by 2.4 to 11.7 % and are stretched "
        "to fit (sub/c00.png, sub/c01.png, sub/c02.png and 62 more)"]


# --------------------------------------------------------------------------- progress, atomicity, inputs

def test_progress_reports_per_card_and_page(make_deck, tmp_path):
    root = make_deck({"fronts": {f"c{k:02d}.png": PALETTE[k] for k in range(20)}, "backs": {"b.png": BACK}})
    calls = []
    generate_sheets(front_dir=root / "fronts", back_dir=root / "backs", output=tmp_path / "o.pdf",
                    progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions)
    assert fractions[-1] == 1.0
    assert sum("image" in m for _, m in calls) == 21
    assert sum("page" in m for _, m in calls) == 6


class Cancelled(Exception):
    pass


def test_cancel_leaves_no_output_and_keeps_an_old_one(make_deck, tmp_path):
    root = make_deck({"fronts": {f"c{k:02d}.png": PALETTE[k] for k in range(20)}})
    out = tmp_path / "out.pdf"
    out.write_bytes(b"old")

    def progress(fraction, message):
        if fraction > 0.75:
            raise Cancelled
    with pytest.raises(Cancelled):
        generate_sheets(front_dir=root / "fronts", output=out, progress=progress)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_inputs_are_never_modified(make_deck, tmp_path):
    root = make_deck({"fronts": {"a.png": PALETTE[0], ".DS_Store": b"junk", "Thumbs.db": b"junk",
                                 "notes.md": b"# notes", "sub/b.png": PALETTE[1]},
                      "backs": {"b.png": BACK, "._b.png": b"junk"}})

    def snapshot():
        return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
                for p in root.rglob("*") if p.is_file()}
    before = snapshot()
    result = generate_sheets(front_dir=root / "fronts", back_dir=root / "backs", output=tmp_path / "o.pdf")
    assert result.cards == 2
    assert snapshot() == before


def test_output_must_not_be_an_input(make_deck):
    root = make_deck({"fronts": {"a.png": PALETTE[0]}})
    with pytest.raises(CardError, match="input"):
        generate_sheets(front_dir=root / "fronts", output=root / "fronts" / "a.png")
    assert Image.open(root / "fronts" / "a.png").size == (8, 11)


def test_changed_input_during_write_is_detected(make_deck, tmp_path):
    root = make_deck({"fronts": {"a.png": Image.new("RGB", (100, 140), PALETTE[0])}})
    target = root / "fronts" / "a.png"

    def progress(fraction, message):
        if message.startswith("Laid out"):
            solid_png(target, PALETTE[1], size=(100, 141))
            os.utime(target, ns=(1, 1))
    with pytest.raises(CardError, match="changed"):
        generate_sheets(front_dir=root / "fronts", output=tmp_path / "o.pdf", only_fronts=True,
                        progress=progress)
    assert not (tmp_path / "o.pdf").exists()
