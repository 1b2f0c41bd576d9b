"""Bleed data of the bleed's own size: one-pixel edge strips and corner colours (spec §4.2).

Renderers such as poppler rasterize a placed image before clipping it, so a bleed drawn
by magnifying the whole card image until one edge pixel covers the bleed costs them
minutes and gigabytes per page. Instead each card image gets, per way it is placed
(crop, extend-corners, the back's turn), four tiny strip images (its edge row or column)
and four corner colours, taken once from its decoded pixels (only those lines are read).

All coordinates here are in the placed frame: the embedded image upright (EXIF applied)
and, for backs, turned 180°; pixel row 0 at the top.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

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


class Lines(Protocol):
    """Rows and columns of an upright decoded image, read without copying all of it."""

    size: tuple[int, int]      # width, height

    def row(self, y: int) -> np.ndarray: ...      # W x 3 (RGB) or W (grey) uint8

    def column(self, x: int) -> np.ndarray: ...   # H x 3 or H


class ArrayLines:
    """Lines of an H x W (x 3) uint8 array, which may be a strided view (RGB of RGBA)."""

    def __init__(self, pixels: np.ndarray):
        self._pixels = pixels
        self.size = (pixels.shape[1], pixels.shape[0])

    def row(self, y: int) -> np.ndarray:
        return self._pixels[y]

    def column(self, x: int) -> np.ndarray:
        return self._pixels[:, x]


class ImageLines:
    """Lines of a loaded Pillow image (RGB or L). Cropping one line is cheap; turning the
    whole image into an array would copy every pixel (Pillow stores RGB as 4 bytes)."""

    def __init__(self, image):
        self._image = image
        self.size = image.size

    def row(self, y: int) -> np.ndarray:
        return np.asarray(self._image.crop((0, y, self.size[0], y + 1)))[0]

    def column(self, x: int) -> np.ndarray:
        return np.asarray(self._image.crop((x, 0, x + 1, self.size[1])))[:, 0]


def edges_of(lines: Lines, key: EdgeKey, original: tuple[int, int]) -> Edges:
    """Strips and corners of an upright image placed as `key`: four lines, never all pixels."""
    size = lines.size
    box = source_box(key, size, original)
    left, top, right, bottom = edge_indices(key, box, size)

    def line(read, index: int, length: int) -> np.ndarray:
        # Turned 180°: line i of the turned image is line length-1-i, reversed.
        return read(length - 1 - index)[::-1] if key.turned else read(index)

    rows = {name: line(lines.row, y, size[1]) for name, y in (("top", top), ("bottom", bottom))}
    cols = {name: line(lines.column, x, size[0]) for name, x in (("left", left), ("right", right))}
    grey = rows["top"].ndim == 1

    def strip(samples: np.ndarray, width: int, height: int) -> Strip:
        return Strip(width, height, grey, np.ascontiguousarray(samples).tobytes())

    def colour(row: np.ndarray, col: int) -> tuple[int, int, int]:
        value = row[col]
        return (int(value),) * 3 if grey else (int(value[0]), int(value[1]), int(value[2]))

    return Edges(
        box=box,
        top=strip(rows["top"], size[0], 1),
        bottom=strip(rows["bottom"], size[0], 1),
        left=strip(cols["left"], 1, size[1]),
        right=strip(cols["right"], 1, size[1]),
        corners=(colour(rows["top"], left), colour(rows["top"], right),
                 colour(rows["bottom"], left), colour(rows["bottom"], right)),
    )
