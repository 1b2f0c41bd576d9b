"""Where the pixels of one card go on the page: PDF matrices, clips and fills.

A card is drawn as its image (once), four one-pixel edge strips stretched across the
bleed and four corner rectangles in the corner pixel's colour: the spec's edge
replication (§4.2) from data of the bleed's own size (app.cards.bleed), so no
placement is magnified beyond what its own pixels need. Orientation (EXIF), the
back's 180° turn, crop and extend-corners are all part of the matrices and strips.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.cards.bleed import Edges, Strip
from app.cards.images import PreparedImage
from app.cards.layouts import PT_PER_PX

Matrix = tuple[float, float, float, float, float, float]   # PDF order: a b c d e f
IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
UNDERLAP_PX = 0.5      # how far a piece reaches under the piece drawn after it
HAIR_PX = 0.01         # how far an outer clip edge pulls in (invisible; beats float noise)
# Vector fills are anti-aliased: a 0.01-px pull-in would tint the outer pixel by 1 %.
FILL_HAIR_PX = 0.001


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


@dataclass(frozen=True)
class ImagePiece:
    """Draw image `piece` ("card", "top", "bottom", "left", "right") with `matrix`, clipped."""

    piece: str
    matrix: Matrix
    clip: tuple[float, float, float, float]     # x, y, w, h in pt


@dataclass(frozen=True)
class FillPiece:
    rgb: tuple[int, int, int]
    rect: tuple[float, float, float, float]     # x, y, w, h in pt


def card_draws(image: PreparedImage, edges: Edges, slot: Slot, *, page_height_pt: float,
               back: bool = False) -> list[ImagePiece | FillPiece]:
    """Pieces that paint the card and its bleed, in drawing order (corners, edges, card)."""
    up_w, up_h = image.upright_size
    bands = _Bands.of(slot)
    pieces = _Pieces(page_height_pt, _corner_fills(edges, (bands.left, bands.right),
                                                   (bands.top, bands.bottom), page_height_pt))
    # A strip's pixels line up with the card's: page x (or y) of strip column (row) 0 and
    # of its far end, extended from the card's own mapping of u0..u1 (v0..v1).
    u0, v0, u1, v1 = edges.box
    x, y, w, h = slot.x, slot.y, slot.w, slot.h
    sx0, sx1 = x - u0 * w / (u1 - u0), x + w + (up_w - u1) * w / (u1 - u0)
    sy0, sy1 = y - v0 * h / (v1 - v0), y + h + (up_h - v1) * h / (v1 - v0)
    for piece, strip, ys, inner in (("top", edges.top, bands.top, "b"),
                                    ("bottom", edges.bottom, bands.bottom, "t")):
        pieces.place(piece, _unit_to_pixels(strip), (0, 0, up_w, 1), (sx0, ys[0], sx1, ys[1]),
                     bands.inner_x, ys, inner, stretch="y")
    for piece, strip, xs, inner in (("left", edges.left, bands.left, "r"),
                                    ("right", edges.right, bands.right, "l")):
        pieces.place(piece, _unit_to_pixels(strip), (0, 0, 1, up_h), (xs[0], sy0, xs[1], sy1),
                     xs, bands.inner_y, inner, stretch="x")
    # the card itself last, on top of everything that reaches under it
    pieces.place("card", _unit_to_source(image, back), (u0, v0, u1, v1), (x, y, x + w, y + h),
                 bands.inner_x, bands.inner_y, "")
    return pieces.items


Span = tuple[float, float]


@dataclass(frozen=True)
class _Bands:
    """A slot's spans in page px: inside the extended corners, and the bleed on each side
    (reaching in by `extend`, where the card's own corners are replaced)."""

    inner_x: Span
    inner_y: Span
    left: Span
    right: Span
    top: Span
    bottom: Span

    @classmethod
    def of(cls, slot: Slot) -> _Bands:
        x, y, w, h, e = slot.x, slot.y, slot.w, slot.h, slot.extend
        return cls((x + e, x + w - e), (y + e, y + h - e),
                   (x - slot.bleed_x, x + e), (x + w - e, x + w + slot.bleed_x),
                   (y - slot.bleed_y, y + e), (y + h - e, y + h + slot.bleed_y))


class _Pieces:
    """The pieces of one card, collected in drawing order."""

    def __init__(self, page_height_pt: float, first: list[ImagePiece | FillPiece]):
        self.page_height_pt = page_height_pt
        self.to_pt: Matrix = (PT_PER_PX, 0.0, 0.0, -PT_PER_PX, 0.0, page_height_pt)
        self.items = first

    def place(self, piece: str, to_unit: Matrix, src, dst, clip_x: Span, clip_y: Span, inner: str,
              stretch: str = "") -> None:
        """Map `src` (in the piece's pixels) onto `dst` (page px), clipped to the spans."""
        if clip_x[1] <= clip_x[0] or clip_y[1] <= clip_y[0]:
            return
        clip = _grow((clip_x[0], clip_y[0], clip_x[1], clip_y[1]), inner, HAIR_PX)
        # Renderers round an image's device box outwards; float noise at an exact pixel
        # edge would then stretch the image by a whole pixel. A hair inside, it cannot.
        box = [dst[0] + HAIR_PX, dst[1] + HAIR_PX, dst[2] - HAIR_PX, dst[3] - HAIR_PX]
        if stretch == "y":                   # a row strip fills its clip's height
            box[1], box[3] = clip[1], clip[3]
        elif stretch == "x":
            box[0], box[2] = clip[0], clip[2]
        matrix = compose(self.to_pt, compose(rect_map(src, (box[0], box[1], box[2], box[3])), to_unit))
        self.items.append(ImagePiece(piece, matrix, rect_pt(clip, self.page_height_pt)))


def _unit_to_source(image: PreparedImage, back: bool) -> Matrix:
    """Unit square -> stored pixels (row 0 at the top) -> upright pixels -> back turned
    (unless the image is stored turned already)."""
    to_source = compose(orientation_matrix(image.orientation, image.width, image.height),
                        (float(image.width), 0.0, 0.0, -float(image.height), 0.0, float(image.height)))
    if back and not image.turned:
        up_w, up_h = image.upright_size
        to_source = compose((-1.0, 0.0, 0.0, -1.0, float(up_w), float(up_h)), to_source)
    return to_source


def _corner_fills(edges: Edges, xs_lr, ys_tb, page_height_pt: float) -> list[ImagePiece | FillPiece]:
    """The four bleed corners, each a rectangle in its corner pixel's colour."""
    (outer_l, outer_r), (outer_t, outer_b) = xs_lr, ys_tb
    fills: list[ImagePiece | FillPiece] = []
    for colour, xs, ys, inner in zip(edges.corners, (outer_l, outer_r, outer_l, outer_r),
                                     (outer_t, outer_t, outer_b, outer_b), ("rb", "lb", "rt", "lt"),
                                     strict=True):
        if xs[1] > xs[0] and ys[1] > ys[0]:
            rect = _grow((xs[0], ys[0], xs[1], ys[1]), inner, FILL_HAIR_PX)
            fills.append(FillPiece(colour, rect_pt(rect, page_height_pt)))
    return fills


def _unit_to_pixels(strip: Strip) -> Matrix:
    """Unit square -> the strip's pixel coordinates, row 0 at the top."""
    return (float(strip.width), 0.0, 0.0, -float(strip.height), 0.0, float(strip.height))


def _grow(rect, inner: str, hair: float) -> tuple[float, float, float, float]:
    """Sides named in `inner` face a piece drawn later and reach under it, so no renderer
    shows a seam; the others pull in by `hair`, so none rounds them outwards by a pixel."""
    left, top, right, bottom = (UNDERLAP_PX if side in inner else -hair for side in "ltrb")
    return rect[0] - left, rect[1] - top, rect[2] + right, rect[3] + bottom


Rect = tuple[float, float, float, float]


def rect_pt(rect: Rect, page_height_pt: float) -> Rect:
    """(x0, y0, x1, y1) px with top-left origin -> (x, y, w, h) pt with bottom-left origin."""
    x0, y0, x1, y1 = rect
    return (x0 * PT_PER_PX, page_height_pt - y1 * PT_PER_PX,
            (x1 - x0) * PT_PER_PX, (y1 - y0) * PT_PER_PX)
