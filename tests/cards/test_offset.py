"""offset_pdf: exact clipped shift of back pages only, everything else untouched (spec §8)."""
from __future__ import annotations

import numpy as np
import pytest
from pypdf import PdfReader, PdfWriter
from reportlab.pdfgen import canvas

from app.cards import CardError, calibration_sheet, generate_sheets, offset_pdf
from tests.cards.helpers import PALETTE, quadrant_image, render

BACK = quadrant_image((PALETTE[40], PALETTE[41], PALETTE[42], PALETTE[43]))


@pytest.fixture
def sheets(make_deck, tmp_path):
    root = make_deck({"fronts": {f"c{k:02d}.png": PALETTE[k] for k in range(10)}, "backs": {"b.png": BACK}})
    out = tmp_path / "sheets.pdf"
    generate_sheets(front_dir=root / "fronts", back_dir=root / "backs", output=out)
    return out


def shifted(arr: np.ndarray, x: int, y: int) -> np.ndarray:
    """Content moved x px right and y px down, paper white where nothing moved in."""
    out = np.full_like(arr, 255)
    h, w = arr.shape[:2]
    out[max(0, y):h + min(0, y), max(0, x):w + min(0, x)] = arr[max(0, -y):h - max(0, y), max(0, -x):w - max(0, x)]
    return out


def contents(pdf, index) -> bytes:
    return PdfReader(pdf).pages[index].get_contents().get_data()


def image_data(pdf, index) -> dict:
    page = PdfReader(pdf).pages[index]
    return {name: ref.get_object()._data for name, ref in page["/Resources"]["/XObject"].items()}


def test_back_pages_move_by_exactly_x_y(sheets, tmp_path):
    out = tmp_path / "offset.pdf"
    result = offset_pdf(input=sheets, output=out, x=30, y=-20)
    assert result.shifted == [2, 4] and result.pages == 4 and result.warnings == []
    for index in (1, 3):
        before, after = render(sheets, index), render(out, index)
        assert np.array_equal(after, shifted(before, 30, -20))
        assert not np.array_equal(after, before)


def test_front_pages_and_images_are_untouched(sheets, tmp_path):
    out = tmp_path / "offset.pdf"
    offset_pdf(input=sheets, output=out, x=7, y=9)
    for index in (0, 2):
        assert contents(out, index) == contents(sheets, index)
        assert np.array_equal(render(out, index), render(sheets, index))
    for index in range(4):
        assert image_data(out, index) == image_data(sheets, index)    # same image objects, same bytes
    assert out.read_bytes().startswith(sheets.read_bytes())           # an update, not a rewrite
    assert PdfReader(out).page_labels == ["Front 1", "Back 1", "Front 2", "Back 2"]


def test_no_wrap_around(sheets, tmp_path):
    out = tmp_path / "offset.pdf"
    result = offset_pdf(input=sheets, output=out, x=-300, y=0)
    assert any("registration marks" in w for w in result.warnings)
    after = render(out, 1)
    assert (after[:, -300:] == 255).all()          # nothing re-enters at the right edge
    assert np.array_equal(after, shifted(render(sheets, 1), -300, 0))


def test_offset_applies_by_role_not_parity(make_deck, tmp_path):
    root = make_deck({"fronts": {f"c{k:02d}.png": PALETTE[k] for k in range(10)}})
    fronts_only = tmp_path / "fronts.pdf"
    generate_sheets(front_dir=root / "fronts", output=fronts_only, only_fronts=True)
    out = tmp_path / "offset.pdf"
    result = offset_pdf(input=fronts_only, output=out, x=10, y=10)
    assert result.shifted == [] and result.warnings == []
    assert contents(out, 1) == contents(fronts_only, 1)


def test_offset_twice_and_zero(sheets, tmp_path):
    once, twice = tmp_path / "once.pdf", tmp_path / "twice.pdf"
    offset_pdf(input=sheets, output=once, x=5, y=5)
    offset_pdf(input=once, output=twice, x=-5, y=-5)
    assert np.array_equal(render(twice, 1), render(sheets, 1))
    zero = tmp_path / "zero.pdf"
    assert offset_pdf(input=sheets, output=zero, x=0, y=0).shifted == []


def test_calibration_sheet_back_can_be_offset(tmp_path):
    sheet = tmp_path / "cal.pdf"
    calibration_sheet(paper_size="letter", output=sheet)
    out = tmp_path / "cal-offset.pdf"
    assert offset_pdf(input=sheet, output=out, x=3, y=0).shifted == [2]


def foreign_pdf(path, pages=4):
    c = canvas.Canvas(str(path), pagesize=(792, 612))
    for number in range(pages):
        c.setFillColorRGB(0, 0, 0)
        c.rect(100, 100, 200, 200, fill=1, stroke=0)
        c.drawString(400, 300, f"page {number + 1}")
        c.showPage()
    c.save()
    return path


def test_foreign_pdf_falls_back_to_even_pages_with_a_warning(tmp_path):
    source = foreign_pdf(tmp_path / "foreign.pdf")
    out = tmp_path / "out.pdf"
    result = offset_pdf(input=source, output=out, x=12, y=0)
    assert result.shifted == [2, 4]
    assert result.warnings and "every second page" in result.warnings[0]
    assert np.array_equal(render(out, 1), shifted(render(source, 1), 12, 0))
    assert np.array_equal(render(out, 0), render(source, 0))


def test_encrypted_pdf_is_rewritten(tmp_path, sheets):
    writer = PdfWriter(clone_from=sheets)
    writer.encrypt(user_password="", owner_password="owner")
    locked = tmp_path / "locked.pdf"
    with open(locked, "wb") as fh:
        writer.write(fh)
    out = tmp_path / "out.pdf"
    result = offset_pdf(input=locked, output=out, x=30, y=-20)
    assert result.shifted == [2, 4]
    assert np.array_equal(render(out, 1), shifted(render(sheets, 1), 30, -20))


def test_password_protected_pdf(tmp_path, sheets):
    writer = PdfWriter(clone_from=sheets)
    writer.encrypt(user_password="secret")
    locked = tmp_path / "locked.pdf"
    with open(locked, "wb") as fh:
        writer.write(fh)
    with pytest.raises(CardError, match="password"):
        offset_pdf(input=locked, output=tmp_path / "out.pdf", x=1, y=1)


@pytest.mark.parametrize("content", [b"", b"not a pdf at all", b"%PDF-1.4\n1 0 obj\n<<", b"\x89PNG\r\n\x1a\n"])
def test_bad_input_is_a_card_error(tmp_path, content):
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(content)
    with pytest.raises(CardError, match="bad.pdf"):
        offset_pdf(input=bad, output=tmp_path / "out.pdf", x=1, y=1)
    assert not (tmp_path / "out.pdf").exists()


def test_truncated_pdf_never_crashes(tmp_path, sheets):
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(sheets.read_bytes()[: sheets.stat().st_size // 2])
    try:
        offset_pdf(input=cut, output=tmp_path / "out.pdf", x=1, y=1)
    except CardError as exc:
        assert "cut.pdf" in str(exc)


@pytest.mark.parametrize("x, y, message", [(601, 0, "x offset"), (0, -601, "y offset"), ("a", 0, "whole number"),
                                           (1.5, 0, "whole number")])
def test_bad_offsets(sheets, tmp_path, x, y, message):
    with pytest.raises(CardError, match=message):
        offset_pdf(input=sheets, output=tmp_path / "out.pdf", x=x, y=y)


def test_missing_input(tmp_path):
    with pytest.raises(CardError, match="not a file"):
        offset_pdf(input=tmp_path / "nope.pdf", output=tmp_path / "out.pdf", x=1, y=1)


def test_progress_ends_at_one(sheets, tmp_path):
    calls = []
    offset_pdf(input=sheets, output=tmp_path / "o.pdf", x=1, y=1, progress=lambda f, m: calls.append(f))
    assert calls == sorted(calls) and calls[-1] == 1.0
