"""How much memory decoding a job's images takes, known before any pixel is decoded.

A job's memory is dominated by the images being decoded at that moment: each one is
held as full pixels, then flattened, converted and resampled (app.cards.images). What is
kept afterwards (bleed strips, the PDF's object table) is small, and re-encoded images
wait on disk. So a job fits its budget when the images decoded *at once* fit it: the
engine loads as many in parallel as the budget allows, down to one, and refuses the job
(CardError naming the file and the figures) when even one image alone cannot fit.

Sizes come from the image headers only (Pillow's `Image.open` reads the header and
decodes nothing), so the check costs milliseconds and can run at upload time as well as
in the worker.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from app.cards.errors import CardError

MB = 1024 * 1024
# Peak bytes per decoded sample, measured with app.cards.images (bench/budget.py: RSS
# peak over the process's baseline): an image with transparency is held as RGBA, copied
# for the white background, composited and converted to RGB (~19 B/px for RGBA, 4.8 per
# sample); an opaque one is decoded, copied into numpy and resampled (~7.6 B/px for RGB,
# 2.5 per sample). Rounded up with a margin, since a refusal is better than a kill.
PEAK_PER_SAMPLE_FLATTENED = 6
PEAK_PER_SAMPLE_OPAQUE = 3
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass(frozen=True)
class ImageCost:
    """What decoding one image needs at its peak."""

    name: str
    width: int
    height: int
    mode: str
    peak_bytes: int

    def describe(self) -> str:
        return f"{self.width} x {self.height} px, {self.mode}"


@dataclass(frozen=True)
class MemoryBudget:
    """The bytes one job may use for decoding, and where that figure comes from
    (said in every refusal, so an operator knows which setting to change)."""

    limit_bytes: int
    origin: str

    @property
    def limit_mb(self) -> int:
        return self.limit_bytes // MB


def peak_bytes(width: int, height: int, mode: str, transparency: bool, file_bytes: int) -> int:
    """Peak memory of decoding one image of this header (the file is read whole, too)."""
    pixels = width * height
    if mode in _WIDE_MODES:
        return pixels * 4 * PEAK_PER_SAMPLE_OPAQUE + file_bytes
    if mode in _ALPHA_MODES or transparency:
        return pixels * 4 * PEAK_PER_SAMPLE_FLATTENED + file_bytes
    samples = 1 if mode in ("1", "L") else max(3, Image.getmodebands(mode))
    return pixels * samples * PEAK_PER_SAMPLE_OPAQUE + file_bytes


def cost_of_open(image: Image.Image, name: str, file_bytes: int) -> ImageCost:
    """The cost of an image already opened (header read, nothing decoded)."""
    width, height = image.size
    transparency = "transparency" in image.info
    return ImageCost(name, width, height, image.mode,
                     peak_bytes(width, height, image.mode, transparency, file_bytes))


def image_cost(path: Path, name: str) -> ImageCost:
    """The cost of the image at `path`, from its header; CardError if none can be read."""
    try:
        with Image.open(path) as image:
            return cost_of_open(image, name, path.stat().st_size)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        # Not an image Pillow can even open: the decoder says why, naming the file.
        return ImageCost(name, 0, 0, "unknown", 0)


def check_fits(cost: ImageCost, budget: MemoryBudget) -> None:
    """CardError naming the image and the figures when it cannot be decoded in budget."""
    if cost.peak_bytes > budget.limit_bytes:
        raise CardError(
            f"{cost.name} needs about {_mb(cost.peak_bytes)} MB of memory to decode "
            f"({cost.describe()}); a job may use {budget.limit_mb} MB ({budget.origin}). "
            "Use a smaller image (fewer pixels, or without transparency)")


def parallel_within(costs: Iterable[ImageCost], budget: MemoryBudget, wanted: int) -> int:
    """How many images may be decoded at once (at most `wanted`, at least 1) so that the
    largest ones together fit the budget; CardError when one alone does not."""
    peaks = sorted((c for c in costs), key=lambda c: c.peak_bytes, reverse=True)
    if not peaks:
        return max(1, wanted)
    check_fits(peaks[0], budget)
    allowed, used = 0, 0
    for cost in peaks[:max(1, wanted)]:
        if used + cost.peak_bytes > budget.limit_bytes:
            break
        used += cost.peak_bytes
        allowed += 1
    return max(1, allowed)


def _mb(value: int) -> int:
    return -(-value // MB)
