"""Cut files for every layout: one closed path per card slot on the card's trim edge (issue 7).

The registration marks are drawn too, on a layer of their own, as reference geometry
for lining the file up with the printed sheet; they are not meant to be cut. Units are
millimetres on a page of the paper's size, origin at the page's top-left corner (SVG) or
bottom-left corner (DXF, y up), so both overlay the PDF exactly.
"""
from __future__ import annotations

import io
import math
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from app.cards.errors import CardError
from app.cards.layouts import Layout, get_layout
from app.cards.pdf import write_atomically

_FIXED_METADATA = threading.Lock()

MM_PER_PX = 25.4 / 300
FORMATS = ("svg", "dxf")
CUT_LAYER, MARKS_LAYER, PAGE_LAYER = "cut", "registration", "page"
BULGE_QUARTER = math.tan(math.pi / 8)     # DXF bulge of a 90° arc


@dataclass(frozen=True)
class Rect:
    """x0, y0, x1, y1 in mm from the page's top-left corner."""

    x0: float
    y0: float
    x1: float
    y1: float


def card_rects(layout: Layout) -> list[Rect]:
    """The trim rectangle of every slot, in slot order."""
    rects = []
    for slot in range(layout.slots):
        x, y = layout.slot_origin(slot)
        rects.append(_mm((x, y, x + layout.card_w, y + layout.card_h)))
    return rects


def mark_outlines(layout: Layout) -> list[list[tuple[float, float]]]:
    """Outlines (mm, top-left origin) of the three marks: the square, then each L."""
    marks = [_mm(rect) for rect in layout.paper.marks]
    square, *bars = marks
    outlines = [_corners(square)]
    for h_bar, v_bar in zip(bars[0::2], bars[1::2], strict=True):
        outlines.append(_l_outline(h_bar, v_bar))
    return outlines


def check_corner_radius(value, layout: Layout) -> float:
    try:
        radius = float(value or 0)
    except (TypeError, ValueError):
        raise CardError(f"corner radius must be a number of millimetres, not {value!r}") from None
    limit = min(layout.card_w, layout.card_h) * MM_PER_PX / 2
    if not 0 <= radius <= limit or math.isnan(radius):
        raise CardError(f"corner radius must be between 0 and {limit:.2f} mm, not {value}")
    return radius


def cutfile_bytes(paper_size: str, card_size: str, fmt: str, corner_radius_mm=0) -> bytes:
    """The cut file for a layout as bytes, in `fmt` ('svg' or 'dxf')."""
    layout = get_layout(paper_size, card_size)
    if fmt not in FORMATS:
        raise CardError(f"unknown cut file format {fmt!r}; supported: {', '.join(FORMATS)}")
    radius = check_corner_radius(corner_radius_mm, layout)
    return _svg(layout, radius) if fmt == "svg" else _dxf(layout, radius)


def write_cutfile(*, paper_size: str, card_size: str, fmt: str, output,
                  corner_radius_mm=0) -> str:
    data = cutfile_bytes(paper_size, card_size, fmt, corner_radius_mm)
    write_atomically(output, lambda fh: fh.write(data))
    return os.fspath(output)


# --------------------------------------------------------------------------- geometry

def _mm(rect) -> Rect:
    return Rect(*(value * MM_PER_PX for value in rect))


def _corners(rect: Rect) -> list[tuple[float, float]]:
    return [(rect.x0, rect.y0), (rect.x1, rect.y0), (rect.x1, rect.y1), (rect.x0, rect.y1)]


def _l_outline(h_bar: Rect, v_bar: Rect) -> list[tuple[float, float]]:
    """Six-corner outline of two bars that share one outer corner."""
    right = abs(h_bar.x1 - v_bar.x1) < abs(h_bar.x0 - v_bar.x0)   # bars meet on the right
    top = abs(h_bar.y0 - v_bar.y0) < abs(h_bar.y1 - v_bar.y1)
    x_out, x_in = (h_bar.x1, v_bar.x0) if right else (h_bar.x0, v_bar.x1)
    y_out, y_in = (v_bar.y0, h_bar.y1) if top else (v_bar.y1, h_bar.y0)
    x_end = h_bar.x0 if right else h_bar.x1
    y_end = v_bar.y1 if top else v_bar.y0
    return [(x_out, y_out), (x_end, y_out), (x_end, y_in), (x_in, y_in), (x_in, y_end), (x_out, y_end)]


def outline(rect: Rect, radius: float) -> list[tuple[tuple[float, float], bool]]:
    """Vertices of `rect` clockwise on the page, each with whether the segment that
    starts there is a quarter arc (rounded corners) rather than a straight line."""
    r = radius
    x0, y0, x1, y1 = rect.x0, rect.y0, rect.x1, rect.y1
    if not r:
        return [((x0, y0), False), ((x1, y0), False), ((x1, y1), False), ((x0, y1), False)]
    return [((x0 + r, y0), False), ((x1 - r, y0), True), ((x1, y0 + r), False), ((x1, y1 - r), True),
            ((x1 - r, y1), False), ((x0 + r, y1), True), ((x0, y1 - r), False), ((x0, y0 + r), True)]


# --------------------------------------------------------------------------- SVG

def _num(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _svg_path(rect: Rect, radius: float) -> str:
    vertices = outline(rect, radius)
    parts = [f"M {_num(vertices[0][0][0])} {_num(vertices[0][0][1])}"]
    for index, ((_x, _y), arc) in enumerate(vertices):
        x, y = vertices[(index + 1) % len(vertices)][0]
        # sweep flag 1: clockwise on the page (SVG's y grows downwards)
        parts.append(f"A {_num(radius)} {_num(radius)} 0 0 1 {_num(x)} {_num(y)}" if arc
                     else f"L {_num(x)} {_num(y)}")
    return " ".join(parts[:-1] if not vertices[-1][1] else parts) + " Z"


def _svg(layout: Layout, radius: float) -> bytes:
    width, height = layout.paper.width_px * MM_PER_PX, layout.paper.height_px * MM_PER_PX
    cuts = "\n".join(f'    <path id="card-{i}" d="{_svg_path(rect, radius)}"/>'
                     for i, rect in enumerate(card_rects(layout)))
    marks = "\n".join('    <path d="M ' + " L ".join(f"{_num(x)} {_num(y)}" for x, y in mark) + ' Z"/>'
                      for mark in mark_outlines(layout))
    layer = 'inkscape:groupmode="layer"'
    text = f'''<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"
     width="{_num(width)}mm" height="{_num(height)}mm" viewBox="0 0 {_num(width)} {_num(height)}">
  <title>{layout.template}: cut lines, {layout.paper.name} / {layout.card_size}, mm</title>
  <g id="{MARKS_LAYER}" {layer} inkscape:label="{MARKS_LAYER}" fill="none" stroke="#0000ff"
     stroke-width="0.1">
{marks}
  </g>
  <g id="{CUT_LAYER}" {layer} inkscape:label="{CUT_LAYER}" fill="none" stroke="#ff0000" stroke-width="0.1">
{cuts}
  </g>
</svg>
'''
    return text.encode("utf-8")


# --------------------------------------------------------------------------- DXF

def _dxf(layout: Layout, radius: float) -> bytes:
    with _reproducible():
        doc = _dxf_document(layout, radius)
        out = io.StringIO()
        doc.write(out)
    return out.getvalue().encode("utf-8")


def _dxf_document(layout: Layout, radius: float):
    import ezdxf  # heavy: only when a DXF is asked for
    from ezdxf import units

    width, height = layout.paper.width_px * MM_PER_PX, layout.paper.height_px * MM_PER_PX
    doc = ezdxf.new("R2010", units=units.MM)
    doc.header["$MEASUREMENT"] = 1
    doc.header["$LIMMIN"], doc.header["$LIMMAX"] = (0, 0), (width, height)
    doc.header["$EXTMIN"], doc.header["$EXTMAX"] = (0, 0, 0), (width, height, 0)
    doc.layers.add(CUT_LAYER, color=1)
    doc.layers.add(MARKS_LAYER, color=5)
    page = doc.layers.add(PAGE_LAYER, color=8)
    page.off()               # the sheet's outline: for orientation, neither cut nor printed
    msp = doc.modelspace()
    # The modelspace layout's limits are written over the header's on save.
    msp.dxf_layout.dxf.limmin, msp.dxf_layout.dxf.limmax = (0, 0), (width, height)

    def flip(x: float, y: float) -> tuple[float, float]:
        return x, height - y

    msp.add_lwpolyline([flip(*p) for p in _corners(Rect(0, 0, width, height))], close=True,
                       dxfattribs={"layer": PAGE_LAYER})
    for mark in mark_outlines(layout):
        msp.add_lwpolyline([flip(*p) for p in mark], close=True, dxfattribs={"layer": MARKS_LAYER})
    for rect in card_rects(layout):
        msp.add_lwpolyline(_dxf_points(rect, radius, flip), format="xyb", close=True,
                           dxfattribs={"layer": CUT_LAYER})
    return doc


@contextmanager
def _reproducible():
    """While it lasts, ezdxf writes fixed metadata, so a layout gives the same bytes every
    time (downloads can be compared, cached and checked in) instead of being stamped with
    the time and random GUIDs. The switch is process-wide, hence the lock; nothing else
    here writes DXF."""
    import ezdxf

    with _FIXED_METADATA:
        previous = ezdxf.options.write_fixed_meta_data_for_testing
        ezdxf.options.write_fixed_meta_data_for_testing = True
        try:
            yield
        finally:
            ezdxf.options.write_fixed_meta_data_for_testing = previous


def _dxf_points(rect: Rect, radius: float, flip) -> list[tuple[float, float, float]]:
    """(x, y, bulge) per vertex; a bulge bends the segment that starts at its vertex. The
    outline runs clockwise as seen on the page, which with y up is clockwise too, so
    every arc has a negative bulge."""
    return [(*flip(x, y), -BULGE_QUARTER if arc else 0.0) for (x, y), arc in outline(rect, radius)]
