"""PNG pixels straight into numpy, and transparency composited on white where it is.

Pillow decodes a card-sized PNG about as fast as libpng, but handing its pixels to numpy
copies them once more (Pillow stores RGB as four bytes per pixel). The common card-art
PNGs (8-bit grey, RGB or RGBA, not interlaced, no tRNS) are therefore decoded here by
libpng through imagecodecs, straight into an array and outside the GIL, so the loader
threads decode on every core. Undoing the row filters (Paeth, mostly) is most of the
cost: 6-9 ms a card, the floor of any PNG deck's time (bench/cards.py).

libpng refuses broken CRCs, truncated files and deflate errors. Data that goes into the
PDF unchanged is checked more strictly first (check_rows): a decoder may stop before a
broken tail that another renderer would draw.
"""
from __future__ import annotations

import numpy as np

# Each byte is its own plane at most: a grey or RGB PNG, or RGBA to be flattened.
FAST_COLOR_TYPES = (0, 2, 6)
WHITE_FULL = 255 * 255
# 1 MB pieces bound the check's memory and cost no more time than one whole-image buffer.
INFLATE_PIECE = 1 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class DamagedData(ValueError):
    """The compressed pixels do not decode to exactly the image's rows."""


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


def check_rows(data: bytes, idat: list[tuple[int, int]], height: int, stride: int) -> None:
    """DamagedData unless the IDAT slices (offset, length) of `data` inflate to exactly
    `height` rows of `stride` bytes, each starting with a valid filter type, in one zlib
    stream with nothing after it. Inflated in pieces, never kept whole."""
    from zlib_ng import zlib_ng

    expected = height * stride
    inflater = zlib_ng.decompressobj()
    produced = 0
    try:
        for offset, length in idat:
            pending = data[offset:offset + length]
            while True:
                piece = inflater.decompress(pending, INFLATE_PIECE)
                pending = inflater.unconsumed_tail
                if produced + len(piece) > expected or _bad_filter_byte(piece, produced, stride):
                    raise DamagedData
                produced += len(piece)
                # A full piece may leave output inside the inflater with no input left.
                if not pending and len(piece) < INFLATE_PIECE:
                    break
    # zlib_ng's stub declares `error` as an Exception instance; it is the exception class
    except zlib_ng.error:  # type: ignore[misc]
        raise DamagedData from None
    if not inflater.eof or produced != expected or inflater.unused_data:
        raise DamagedData


def _bad_filter_byte(piece: bytes, produced: int, stride: int) -> bool:
    """Whether a row of this piece starts with a filter type above 4 (Paeth)."""
    first = (-produced) % stride          # the filter byte of each row in this piece
    return first < len(piece) and int(np.frombuffer(piece, np.uint8)[first::stride].max()) > 4


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
