"""Bleed data of the bleed's own size: one-pixel edge strips and corner colours (spec §4.2).

Renderers such as poppler rasterize a placed image before clipping it, so a bleed drawn
by magnifying the whole card image until one edge pixel covers the bleed costs them
minutes and gigabytes per page. Instead each card image gets, per way it is placed
(crop, extend-corners, the back's turn), four tiny strip images (its edge row or column)
and four corner colours, taken once from its decoded pixels.

All coordinates here are in the placed frame: the embedded image upright (EXIF applied)
and, for backs, turned 180°; pixel row 0 at the top.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.cards.options import Crop


@dataclass(frozen=True)
class EdgeKey:
    """One way of placing an image: slot size (300-ppi px), crop, extend-corners, turn."""

    card_px: tuple[int, int]
    crop: Crop | None = None
    extend: int = 0
    turned: bool = False


@dataclass(frozen=True)
class Strip:
    """A one-pixel row (1 x n) or column (n x 1) of raw 8-bit samples."""

    width: int
    height: int
    grey: bool
    samples: bytes


@dataclass(frozen=True)
class Edges:
    box: tuple[float, float, float, float]    # u0, v0, u1, v1: the part of the image on the card
    top: Strip
    bottom: Strip
    left: Strip
    right: Strip
    corners: tuple[tuple[int, int, int], ...]  # top-left, top-right, bottom-left, bottom-right


def source_box(key: EdgeKey, size: tuple[int, int],
               original: tuple[int, int]) -> tuple[float, float, float, float]:
    """Part of an image of `size` shown on the card. Crop borders are measured on the
    original file (spec §7) and scaled to the embedded image, which may be downsampled."""
    width, height = size
    orig_w, orig_h = original
    cx, cy = key.crop.border_px(orig_w, orig_h) if key.crop else (0, 0)
    u0, v0 = cx * width / orig_w, cy * height / orig_h
    return u0, v0, width - u0, height - v0


def edge_indices(key: EdgeKey, box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom): the image column/row that lands on the first and last
    slot pixel inside the extend-corners frame, i.e. the pixels the bleed replicates."""
    u0, v0, u1, v1 = box
    (w, h), e = key.card_px, key.extend
    kx, ky = (u1 - u0) / w, (v1 - v0) / h
    return (_index(u0 + (e + 0.5) * kx, size[0]), _index(v0 + (e + 0.5) * ky, size[1]),
            _index(u0 + (w - e - 0.5) * kx, size[0]), _index(v0 + (h - e - 0.5) * ky, size[1]))


def _index(value: float, size: int) -> int:
    return min(size - 1, max(0, math.floor(value)))


def edges_of(pixels: np.ndarray, key: EdgeKey, original: tuple[int, int]) -> Edges:
    """Strips and corners of `pixels` (upright H x W or H x W x 3 uint8) placed as `key`."""
    if key.turned:
        pixels = pixels[::-1, ::-1]
    size = (pixels.shape[1], pixels.shape[0])
    box = source_box(key, size, original)
    left, top, right, bottom = edge_indices(key, box, size)
    grey = pixels.ndim == 2

    def strip(samples: np.ndarray, width: int, height: int) -> Strip:
        return Strip(width, height, grey, np.ascontiguousarray(samples).tobytes())

    def colour(row: int, col: int) -> tuple[int, int, int]:
        value = pixels[row, col]
        if grey:
            return (int(value),) * 3
        red, green, blue = (int(v) for v in value)  # H x W x 3: one sample per channel
        return red, green, blue

    return Edges(
        box=box,
        top=strip(pixels[top], size[0], 1),
        bottom=strip(pixels[bottom], size[0], 1),
        left=strip(pixels[:, left], 1, size[1]),
        right=strip(pixels[:, right], 1, size[1]),
        corners=(colour(top, left), colour(top, right), colour(bottom, left), colour(bottom, right)),
    )
