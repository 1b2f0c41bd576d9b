"""Lossless re-encoding of decoded card images for FlateDecode with PNG predictors.

Re-encoding is the slow step for card art that cannot pass through (transparency,
palettes, other formats). Pillow's PNG writer tries every filter per row and deflates
at level 6: about 0.2 s for one 825 x 1125 card. Card art is mostly smooth gradients
and flat areas, where the PNG "Up" filter on every row, computed in one numpy step,
followed by zlib-ng at a low level gives files of about the same size in a tenth of
the time. zlib-ng writes standard zlib streams that every PDF reader inflates.
"""
from __future__ import annotations

import numpy as np

PNG_UP = 2
LEVEL = 2      # zlib-ng: level 1 is a third larger on card art, levels above 2 twice as slow


def deflated(data: bytes) -> bytes:
    """zlib data of small streams (bleed strips, page content) at the same fast level."""
    from zlib_ng import zlib_ng

    return zlib_ng.compress(data, LEVEL)


def png_idat(pixels: np.ndarray) -> bytes:
    """zlib data of `pixels` (H x W grey or H x W x 3 uint8, possibly a strided view such
    as the RGB of an RGBA array) as PNG rows, each "Up"-filtered."""
    from zlib_ng import zlib_ng

    height = pixels.shape[0]
    # Flat rows first: numpy subtracts (and copies) 3-sample pixels of a strided view
    # such as RGB-of-RGBA many times slower than flat rows.
    rows = contiguous(pixels).reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = PNG_UP
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])   # uint8 arithmetic wraps mod 256
    return zlib_ng.compress(filtered.data, LEVEL)


def contiguous(pixels: np.ndarray) -> np.ndarray:
    """`pixels` as a C-contiguous array. A strided colour view is copied one channel at a
    time: numpy's copy of 3-of-4 bytes per pixel is five times slower than three plane
    copies (1 ms against 5.6 ms for one 825 x 1125 card)."""
    if pixels.flags.c_contiguous:
        return pixels
    out = np.empty(pixels.shape, np.uint8)
    if pixels.ndim == 3:
        for channel in range(pixels.shape[2]):
            out[:, :, channel] = pixels[:, :, channel]
    else:
        out[...] = pixels
    return out
