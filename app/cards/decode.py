"""PNG pixels straight into numpy, and transparency composited on white where it is.

Pillow decodes a card-sized PNG about half as fast as libpng through imagecodecs, and
handing its pixels to numpy copies them once more (Pillow stores RGB as four bytes per
pixel). The common card-art PNGs (8-bit grey, RGB or RGBA, not interlaced, no tRNS) are
therefore decoded here, straight into an array; imagecodecs releases the GIL, so the
loader threads decode on every core. libpng refuses broken CRCs, truncated files and
deflate errors; the stricter check of data that goes into the PDF unchanged stays in
app.cards.images.
"""
from __future__ import annotations

import numpy as np

# Each byte is its own plane at most: a grey or RGB PNG, or RGBA to be flattened.
FAST_COLOR_TYPES = (0, 2, 6)
WHITE_FULL = 255 * 255


def fast_png(bit_depth: int, color_type: int, interlace: int, has_transparency: bool) -> bool:
    """Whether png_pixels decodes this PNG exactly as Pillow would."""
    return bit_depth == 8 and color_type in FAST_COLOR_TYPES and interlace == 0 and not has_transparency


def png_pixels(data: bytes) -> np.ndarray:
    """H x W (grey), H x W x 3 or H x W x 4 uint8 pixels of a PNG that fast_png accepts;
    ValueError naming libpng's reason if the file is damaged."""
    from imagecodecs import PngError, png_decode

    try:
        pixels = png_decode(data)
    except PngError as exc:
        raise ValueError(str(exc)) from None
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return pixels


def flatten_on_white(rgba: np.ndarray) -> np.ndarray:
    """The RGB of `rgba` composited onto white, as a view of `rgba` (changed in place).

    Card art is opaque but for its rounded corners or a frame, so only the rows that
    hold a not fully opaque pixel are computed; on white, c' = round(255 - a (255 - c) / 255).
    """
    alpha = rgba[:, :, 3]
    rows = np.flatnonzero(alpha.min(axis=1) != 255)
    if rows.size:
        block = rgba[rows].astype(np.uint16)
        a = block[:, :, 3:4]
        value = WHITE_FULL - a * (255 - block[:, :, :3])          # 255 * c', at most 65025
        value += 128
        value += value >> 8                                          # exact rounding of / 255
        rgba[rows, :, :3] = (value >> 8).astype(np.uint8)
    return rgba[:, :, :3]
