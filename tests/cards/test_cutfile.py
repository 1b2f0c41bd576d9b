"""Cut files: one closed path per card slot on the PDF's trim edges, marks on their own layer."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import ezdxf
import pytest

from app.cards import CardError, generate_sheets
from app.cards.cutfile import cutfile_bytes
from tests.cards.helpers import PALETTE, SPEC_LAYOUTS, drawn_images, solid_png

MM_PER_PT = 25.4 / 72
TOLERANCE_MM = 0.1
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fronts")
    for k in range(40):                     # the most slots of any layout
        solid_png(folder / f"c{k:02d}.png", PALETTE[k])
    return folder


def pdf_card_slots(pdf, page_height_pt: float) -> list[tuple[float, float, float, float]]:
    """Card rectangles (mm from the top-left) of page 1: where each card image is drawn."""
    slots = []
    for page, width, height, (a, _b, _c, d, e, f) in drawn_images(pdf):
        if page == 0 and min(width, height) > 1:           # not a one-pixel bleed strip
            x0, x1 = e * MM_PER_PT, (e + a) * MM_PER_PT
            top, bottom = (page_height_pt - f - d) * MM_PER_PT, (page_height_pt - f) * MM_PER_PT
            slots.append((x0, top, x1, bottom))
    return sorted(slots)


def svg_rects(data: bytes):
    root = ET.fromstring(data)
    layers = {g.get("id"): g for g in root.iter(f"{SVG}g")}
    assert set(layers) == {"cut", "registration"}
    def bounds(path):
        assert path.get("d").rstrip().endswith("Z")        # closed
        # every command's last two numbers are its end point (arcs' radii come first)
        ends = [[float(v) for v in args.split()][-2:] for _cmd, args in re.findall(r"([MLA])([^MLAZ]+)", path.get("d"))]
        xs, ys = [x for x, _ in ends], [y for _, y in ends]
        return min(xs), min(ys), max(xs), max(ys)
    cuts = sorted(bounds(p) for p in layers["cut"].iter(f"{SVG}path"))
    marks = list(layers["registration"].iter(f"{SVG}path"))
    return root, cuts, marks


def dxf_doc(data: bytes, tmp_path):
    path = tmp_path / "cut.dxf"
    path.write_bytes(data)
    return ezdxf.readfile(path)


def dxf_rects(doc, page_height_mm: float):
    rects = []
    for line in doc.modelspace().query('LWPOLYLINE[layer=="cut"]'):
        assert line.closed
        xs = [p[0] for p in line.get_points("xy")]
        ys = [page_height_mm - p[1] for p in line.get_points("xy")]
        rects.append((min(xs), min(ys), max(xs), max(ys)))
    return sorted(rects)


def close(a, b) -> bool:
    return len(a) == len(b) and all(abs(u - v) <= TOLERANCE_MM for r, s in zip(a, b) for u, v in zip(r, s))


@pytest.mark.parametrize("spec", SPEC_LAYOUTS, ids=lambda s: f"{s.paper}-{s.card}")
def test_cut_paths_coincide_with_the_pdf_card_slots(spec, fronts, tmp_path):
    pdf = tmp_path / "sheet.pdf"
    generate_sheets(front_dir=fronts, output=pdf, paper_size=spec.paper, card_size=spec.card,
                    only_fronts=True)
    width_mm, height_mm = (v * 25.4 / 300 for v in spec.page)
    slots = pdf_card_slots(pdf, spec.page[1] * 72 / 300)
    assert len(slots) == spec.slots

    root, cuts, marks = svg_rects(cutfile_bytes(spec.paper, spec.card, "svg"))
    assert close(cuts, slots), (cuts[:2], slots[:2])
    assert len(marks) == 3
    assert root.get("width").endswith("mm") and root.get("height").endswith("mm")
    assert float(root.get("width")[:-2]) == pytest.approx(width_mm, abs=1e-3)
    assert float(root.get("height")[:-2]) == pytest.approx(height_mm, abs=1e-3)

    doc = dxf_doc(cutfile_bytes(spec.paper, spec.card, "dxf"), tmp_path)
    assert doc.header["$INSUNITS"] == 4                    # millimetres
    assert {"cut", "registration"} <= {layer.dxf.name for layer in doc.layers}
    assert close(dxf_rects(doc, height_mm), slots)
    assert len(doc.modelspace().query('LWPOLYLINE[layer=="registration"]')) == 3
    assert doc.header["$LIMMAX"] == pytest.approx((width_mm, height_mm))


def test_rounded_corners_keep_the_trim_rectangle(tmp_path):
    _root, plain, _ = svg_rects(cutfile_bytes("letter", "standard", "svg"))
    _root, rounded, _ = svg_rects(cutfile_bytes("letter", "standard", "svg", corner_radius_mm=3))
    assert close(plain, rounded)
    assert " A 3 3 0 0 1 " in cutfile_bytes("letter", "standard", "svg", corner_radius_mm=3).decode()
    doc = dxf_doc(cutfile_bytes("letter", "standard", "dxf", corner_radius_mm=3), tmp_path)
    line = doc.modelspace().query('LWPOLYLINE[layer=="cut"]')[0]
    bulges = [p[4] for p in line.get_points("xyseb")]
    assert len(bulges) == 8 and sum(1 for b in bulges if abs(b) > 0.4) == 4
    # the arcs' outer extent is the trim rectangle (ezdxf flattens the bulges)
    from ezdxf import bbox
    box = bbox.extents([line])
    assert box.size.x == pytest.approx(742 * 25.4 / 300, abs=0.01)


@pytest.mark.parametrize("kwargs, message", [
    ({"fmt": "pdf"}, "svg, dxf"),
    ({"fmt": "svg", "corner_radius_mm": -1}, "corner radius"),
    ({"fmt": "svg", "corner_radius_mm": 40}, "corner radius"),
    ({"fmt": "svg", "corner_radius_mm": "x"}, "corner radius"),
    ({"fmt": "svg", "card_size": "poker_half", "paper_size": "a3"}, "not available"),
])
def test_bad_cutfile_requests_are_card_errors(kwargs, message):
    args = {"paper_size": "letter", "card_size": "standard", **kwargs}
    with pytest.raises(CardError, match=message):
        cutfile_bytes(args.pop("paper_size"), args.pop("card_size"), args.pop("fmt"), **args)


@pytest.mark.parametrize("fmt", ["svg", "dxf"])
def test_a_layout_gives_the_same_bytes_every_time(fmt):
    """Cut files are functions of their layout: no creation time, no random GUID, so two
    downloads a second apart compare equal (and ezdxf's global switch is put back)."""
    import time

    first = cutfile_bytes("letter", "standard", fmt, corner_radius_mm=3)
    time.sleep(0.05)   # ezdxf's time stamps (microseconds, and days to 9 decimals) move on
    assert cutfile_bytes("letter", "standard", fmt, corner_radius_mm=3) == first
    assert cutfile_bytes("a4", "standard", fmt, corner_radius_mm=3) != first
    assert ezdxf.options.write_fixed_meta_data_for_testing is False
