"""Where the pixels of one card image go on the page, as PDF matrices and clips.

A card is drawn from one image object, nine times: the card itself, four edge
strips and four corners. Each strip shows a single edge row or column of the image
stretched across the bleed, each corner a single corner pixel, which is the spec's
edge replication (§4.2) without any extra image data. Orientation (EXIF),
the back's 180° turn, crop and extend-corners are all part of the matrices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from app.cards.images import PreparedImage
from app.cards.layouts import PT_PER_PX
from app.cards.options import Crop

Matrix = tuple[float, float, float, float, float, float]   # PDF order: a b c d e f
IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
UNDERLAP_PX = 0.5      # how far a piece reaches under the piece drawn after it
HAIR_PX = 0.01         # how far an outer clip edge pulls in (invisible; beats float noise)
PURE_PX = 0.02         # half-width of the sample taken from an inner pixel for the bleed


def compose(outer: Matrix, inner: Matrix) -> Matrix:
    """Matrix applying `inner` first, then `outer` (x' = a x + c y + e, y' = b x + d y + f)."""
    a1, b1, c1, d1, e1, f1 = outer
    a2, b2, c2, d2, e2, f2 = inner
    return (
        a1 * a2 + c1 * b2, b1 * a2 + d1 * b2,
        a1 * c2 + c1 * d2, b1 * c2 + d1 * d2,
        a1 * e2 + c1 * f2 + e1, b1 * e2 + d1 * f2 + f1,
    )


def orientation_matrix(orientation: int, width: int, height: int) -> Matrix:
    """Stored pixel coordinates -> upright coordinates for an EXIF orientation (1-8)."""
    w, h = float(width), float(height)
    return {
        1: IDENTITY,
        2: (-1.0, 0.0, 0.0, 1.0, w, 0.0),     # mirrored left-right
        3: (-1.0, 0.0, 0.0, -1.0, w, h),      # turned 180°
        4: (1.0, 0.0, 0.0, -1.0, 0.0, h),     # mirrored top-bottom
        5: (0.0, 1.0, 1.0, 0.0, 0.0, 0.0),    # transposed
        6: (0.0, 1.0, -1.0, 0.0, h, 0.0),     # needs 90° clockwise
        7: (0.0, -1.0, -1.0, 0.0, h, w),      # transversed
        8: (0.0, -1.0, 1.0, 0.0, 0.0, w),     # needs 90° counter-clockwise
    }[orientation]


def rect_map(src: tuple[float, float, float, float], dst: tuple[float, float, float, float]) -> Matrix:
    """Axis-aligned map of rectangle src (x0, y0, x1, y1) onto dst."""
    sx = (dst[2] - dst[0]) / (src[2] - src[0])
    sy = (dst[3] - dst[1]) / (src[3] - src[1])
    return (sx, 0.0, 0.0, sy, dst[0] - sx * src[0], dst[1] - sy * src[1])


@dataclass(frozen=True)
class Slot:
    """A card rectangle on the page in px (top-left origin) and its bleed."""

    x: int
    y: int
    w: int
    h: int
    bleed_x: int
    bleed_y: int
    extend: int = 0


def card_draws(image: PreparedImage, slot: Slot, *, page_height_pt: float,
               crop: Crop | None = None, back: bool = False) -> list[tuple[Matrix, tuple]]:
    """(matrix, clip) pairs that paint the card and its bleed; clip is (x, y, w, h) in pt."""
    up_w, up_h = image.upright_size
    # Unit square -> stored pixels (row 0 at the top) -> upright pixels -> back turned.
    to_source = compose(orientation_matrix(image.orientation, image.width, image.height),
                        (float(image.width), 0.0, 0.0, -float(image.height), 0.0, float(image.height)))
    if back:
        to_source = compose((-1.0, 0.0, 0.0, -1.0, float(up_w), float(up_h)), to_source)
    to_pt = (PT_PER_PX, 0.0, 0.0, -PT_PER_PX, 0.0, page_height_pt)

    # Crop borders are measured on the original file (spec §7), then scaled to the
    # embedded image, which may have been downsampled.
    orig_w, orig_h = image.original_size
    cx, cy = crop.border_px(orig_w, orig_h) if crop else (0, 0)
    u0, v0 = cx * up_w / orig_w, cy * up_h / orig_h
    u1, v1 = up_w - u0, up_h - v0

    x, y, w, h, e = slot.x, slot.y, slot.w, slot.h, slot.extend
    bx, by = slot.bleed_x, slot.bleed_y
    # The image row/column that lands on the first/last slot pixel inside the trimmed edge.
    kx, ky = (u1 - u0) / w, (v1 - v0) / h
    left = _index(u0 + (e + 0.5) * kx, up_w)
    right = _index(u0 + (w - e - 0.5) * kx, up_w)
    top = _index(v0 + (e + 0.5) * ky, up_h)
    bottom = _index(v0 + (h - e - 0.5) * ky, up_h)

    card_src = (u0, v0, u1, v1)
    card_dst = (x, y, x + w, y + h)
    inner_x = (x + e, x + w - e)
    inner_y = (y + e, y + h - e)
    outer_l, outer_r = (x - bx, x + e), (x + w - e, x + w + bx)
    outer_t, outer_b = (y - by, y + e), (y + h - e, y + h + by)

    draws: list[tuple[Matrix, tuple]] = []

    def add(src, dst, clip_x, clip_y, inner_sides: str) -> None:
        if clip_x[1] <= clip_x[0] or clip_y[1] <= clip_y[0]:
            return
        # Sides facing a piece drawn later reach under it, so no renderer shows a seam;
        # all other sides pull in by a hair, so none rounds a clip outwards by a pixel.
        left, top, right, bottom = (UNDERLAP_PX if side in inner_sides else -HAIR_PX
                                    for side in "ltrb")
        clip = (clip_x[0] - left, clip_y[0] - top, clip_x[1] + right, clip_y[1] + bottom)
        # Renderers round an image's device box outwards; float noise at an exact pixel
        # edge would then stretch the image by a whole pixel. A hair inside, it cannot.
        inset = (dst[0] + HAIR_PX, dst[1] + HAIR_PX, dst[2] - HAIR_PX, dst[3] - HAIR_PX)
        matrix = compose(to_pt, compose(rect_map(src, inset), to_source))
        draws.append((matrix, rect_pt(clip, page_height_pt)))

    cols = {"l": _pure(left, up_w), "r": _pure(right, up_w)}
    rows = {"t": _pure(top, up_h), "b": _pure(bottom, up_h)}
    # corners: a single pixel each
    for col, xs, x_inner in (("l", outer_l, "r"), ("r", outer_r, "l")):
        for row, ys, y_inner in (("t", outer_t, "b"), ("b", outer_b, "t")):
            src = (cols[col][0], rows[row][0], cols[col][1], rows[row][1])
            add(src, (xs[0], ys[0], xs[1], ys[1]), xs, ys, x_inner + y_inner)
    # edges: one row or column, stretched across the bleed, aligned with the card's pixels
    add((u0, rows["t"][0], u1, rows["t"][1]), (x, outer_t[0], x + w, outer_t[1]), inner_x, outer_t, "b")
    add((u0, rows["b"][0], u1, rows["b"][1]), (x, outer_b[0], x + w, outer_b[1]), inner_x, outer_b, "t")
    add((cols["l"][0], v0, cols["l"][1], v1), (outer_l[0], y, outer_l[1], y + h), outer_l, inner_y, "r")
    add((cols["r"][0], v0, cols["r"][1], v1), (outer_r[0], y, outer_r[1], y + h), outer_r, inner_y, "l")
    # the card itself last, on top of everything that reaches under it
    add(card_src, card_dst, inner_x, inner_y, "")
    return draws


def _index(value: float, size: int) -> int:
    return min(size - 1, max(0, math.floor(value)))


def _pure(index: int, size: int) -> tuple[float, float]:
    """Source interval that renders as pixel `index` alone, even where viewers smooth.

    Smoothing viewers (pdfium, most screens) interpolate between pixel centres when they
    enlarge an image, so stretching a whole edge pixel over the bleed would blend in
    its inner neighbour. The half pixel at the image border has no inner neighbour to
    blend with; a pixel inside the image (after crop or extend-corners) is sampled
    within PURE_PX of its centre, which keeps any blend under 2 %.
    """
    if index == 0:
        return 0.0, 0.5
    if index == size - 1:
        return size - 0.5, float(size)
    return index + 0.5 - PURE_PX, index + 0.5 + PURE_PX


Rect = tuple[float, float, float, float]


def rect_pt(rect: Rect, page_height_pt: float) -> Rect:
    """(x0, y0, x1, y1) px with top-left origin -> (x, y, w, h) pt with bottom-left origin."""
    x0, y0, x1, y1 = rect
    return (x0 * PT_PER_PX, page_height_pt - y1 * PT_PER_PX,
            (x1 - x0) * PT_PER_PX, (y1 - y0) * PT_PER_PX)
