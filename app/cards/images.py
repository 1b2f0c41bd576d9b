"""Safe loading of card images into PDF-ready image streams (issue 2, item 6).

Two routes:

* pass-through: an 8-bit RGB/grey non-interlaced PNG without transparency, or a
  Huffman-coded RGB/grey JPEG, that needs no downsampling goes into the PDF with its
  compressed data untouched (PNG IDAT with PNG predictors, JPEG as DCT). The data is
  copied from the file only while the PDF is written, so memory does not grow with
  the deck. EXIF orientation is then applied by the placement matrix, not by pixels.
  The file is still decoded once in full: that proves the data a renderer will get is
  sound (a PNG with valid CRCs can still hold broken deflate data) and yields the
  pixels the bleed strips are cut from.
* decode: everything else is fully decoded by Pillow, oriented, flattened onto white,
  downsampled if it is well above the target resolution, and re-encoded losslessly
  (quality 100, app.cards.deflate) or as JPEG (quality < 100).

Either way the decoded pixels are dropped once the bleed strips (app.cards.bleed) are
taken. Every failure is a CardError naming the file.
"""
from __future__ import annotations

import io
import itertools
import math
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.cards.bleed import ArrayLines, EdgeKey, Edges, ImageLines, Lines, edges_of
from app.cards.decode import PNG_SIGNATURE, DamagedData, check_rows, fast_png, flatten_on_white, png_pixels
from app.cards.deflate import png_idat
from app.cards.errors import CardError
from app.cards.options import Crop

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP")
# Keeping an image up to this factor above the target resolution costs less than a
# resampling generation: 825 x 1125 art with its bleed stays as it is on a standard slot.
DOWNSAMPLE_TOLERANCE = 1.2


# --------------------------------------------------------------------------- data sources

class StreamSource:
    """Produces the bytes of one PDF stream when the file is written."""

    length: int

    def copy_to(self, out) -> None:
        raise NotImplementedError


@dataclass
class FileSlices(StreamSource):
    """Byte ranges of an input file (PNG IDAT payloads, a whole JPEG).

    The file's size and mtime are checked again at copy time, so an input changed
    during the run fails loudly instead of producing a broken PDF.
    """

    path: Path
    name: str
    slices: list[tuple[int, int]]   # offset, length
    stamp: tuple[int, int]
    length: int = field(init=False)

    def __post_init__(self):
        self.length = sum(length for _, length in self.slices)

    def copy_to(self, out) -> None:
        changed = CardError(f"{self.name}: the file changed while the PDF was being written")
        with open(self.path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if (st.st_size, st.st_mtime_ns) != self.stamp:
                raise changed
            for offset, length in self.slices:
                fh.seek(offset)
                data = fh.read(length)
                if len(data) != length:
                    raise changed
                out.write(data)


class Spool:
    """Re-encoded images wait in a private temporary folder, not in memory."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="cards-")
        self._numbers = itertools.count(1)   # next() is atomic: loader threads share it

    def put(self, data: bytes, name: str) -> StreamSource:
        path = Path(self._dir.name) / f"{next(self._numbers)}.bin"
        path.write_bytes(data)
        st = path.stat()
        return FileSlices(path, name, [(0, len(data))], (st.st_size, st.st_mtime_ns))

    def close(self) -> None:
        self._dir.cleanup()


# --------------------------------------------------------------------------- result

@dataclass
class BytesSource(StreamSource):
    """A small stream held in memory (bleed strips)."""

    data: bytes
    length: int = field(init=False)

    def __post_init__(self):
        self.length = len(self.data)

    def copy_to(self, out) -> None:
        out.write(self.data)


@dataclass
class PreparedImage:
    """One image object of the PDF and how to place it."""

    name: str
    width: int                    # pixels of the embedded image, as stored
    height: int
    orientation: int              # EXIF orientation still to apply when placing (1 = none)
    colorspace: str               # "/DeviceRGB" or "/DeviceGray"
    filter: str                   # "/FlateDecode" or "/DCTDecode"
    png_predictors: bool
    source: StreamSource
    original_size: tuple[int, int]   # upright size of the input file, for crop and warnings
    passthrough: bool
    # Stored already turned 180°: an image shown only on back pages is encoded turned, so
    # it is placed without a mirroring matrix (poppler draws mirrored images 15 % slower).
    turned: bool = False
    edges: dict[EdgeKey, Edges] = field(default_factory=dict)   # bleed per way of placing it

    @property
    def upright_size(self) -> tuple[int, int]:
        """Embedded size once the orientation is applied."""
        if self.orientation >= 5:
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class Demand:
    """What one use of an image needs: the slot at the target resolution, the crop,
    and how it is placed (for its bleed strips)."""

    slot_px: tuple[int, int]
    crop: Crop | None = None
    edge: EdgeKey | None = None


# --------------------------------------------------------------------------- loading

def prepare_image(path: Path, *, name: str, demands: list[Demand], max_pixels: int,
                  quality: int, spool: Spool) -> PreparedImage:
    """Validate and prepare one card image; CardError (naming `name`) if it is unusable."""
    try:
        return _prepare(Path(path), name, demands, max_pixels, quality, spool)
    except CardError:
        raise
    except Image.DecompressionBombError:
        raise CardError(f"{name}: image is too large (more than {max_pixels:,} pixels)") from None
    except MemoryError:
        raise CardError(f"{name}: image is too large to process") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, zlib.error,
            IndexError, KeyError, TypeError) as exc:
        # Pillow reports corrupt data with any of these.
        raise CardError(f"{name}: not a valid image or the file is damaged ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]


def _prepare(path, name, demands, max_pixels, quality, spool) -> PreparedImage:
    data, stamp = _read(path, name, max_pixels)
    png = _png_layout(data) if data.startswith(PNG_SIGNATURE) else None
    if png is not None and png.width * png.height > max_pixels:
        raise CardError(f"{name}: image is too large ({png.width} x {png.height} px, "
                        f"limit {max_pixels:,} pixels)")
    fmt, width, height, orientation = _identify(data, png, name, max_pixels)
    upright = (height, width) if orientation >= 5 else (width, height)
    target = _downsample_size(upright, demands)
    turned = bool(demands) and all(d.edge is not None and d.edge.turned for d in demands)

    lines: Lines
    if target is None and png is not None and png.passthrough and quality == 100 and not turned:
        _check_png_rows(data, png, name)
        lines = ArrayLines(png_pixels(data))   # libpng's check, and the strips
        image = PreparedImage(name, width, height, 1, png.colorspace, "/FlateDecode", True,
                              FileSlices(path, name, png.idat, stamp), upright, passthrough=True)
    elif target is None and fmt == "JPEG" and _jpeg_passthrough(data):
        lines = ImageLines(_decoded_image(data, orientation))
        colorspace = "/DeviceGray" if _jpeg_components(data) == 1 else "/DeviceRGB"
        image = PreparedImage(name, width, height, orientation, colorspace, "/DCTDecode", False,
                              FileSlices(path, name, [(0, len(data))], stamp), upright,
                              passthrough=True)
    elif target is None and png is not None and orientation == 1 and fast_png(
            png.bit_depth, png.color_type, png.interlace, png.has_transparency):
        image, lines = _reencode_png(data, name, upright, quality, spool, turned)
    else:
        image, lines = _decode(data, name, upright, target, quality, spool, turned)
    image.edges = {d.edge: edges_of(lines, d.edge, upright) for d in demands if d.edge is not None}
    return image


def _read(path: Path, name: str, max_pixels: int) -> tuple[bytes, tuple[int, int]]:
    """The file's bytes and the (size, mtime) stamp FileSlices checks again at write time."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            # No sane image file is this much bigger than its pixels.
            if st.st_size > 4 * max_pixels + (16 << 20):
                raise CardError(f"{name}: file is too large ({st.st_size:,} bytes)")
            return fh.read(), (st.st_size, st.st_mtime_ns)
    except OSError as exc:
        raise CardError(f"{name}: cannot read the file ({exc.strerror})") from None


def _identify(data: bytes, png: _PngLayout | None, name: str,
              max_pixels: int) -> tuple[str, int, int, int]:
    """(format, width, height, EXIF orientation) from the header; every PNG chunk's CRC
    is checked, no pixel is decoded."""
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise CardError(f"{name}: not a supported image; use PNG, JPEG, WebP, GIF, TIFF or BMP") from None
    width, height = im.size
    if width < 1 or height < 1:
        raise CardError(f"{name}: image has no pixels")
    if width * height > max_pixels:
        raise CardError(f"{name}: image is too large ({width} x {height} px, "
                        f"limit {max_pixels:,} pixels)")
    fmt = im.format or ""
    if png is None:  # not a PNG, or one whose chunks could not be walked
        im.verify()  # must come right after open
    elif not png.crcs_match(data):
        raise CardError(f"{name}: not a valid image or the file is damaged (a chunk's checksum "
                        "does not match: the file was damaged in transfer)")
    # A PNG keeps EXIF in an eXIf chunk; asking Pillow for it would decode the pixels.
    if fmt == "PNG" and not (png and png.has_exif):
        return fmt, width, height, 1
    return fmt, width, height, _orientation(Image.open(io.BytesIO(data), formats=FORMATS))


def _decoded_image(data: bytes, orientation: int) -> Image.Image:
    """The upright, fully decoded image of a pass-through JPEG. Decoding all of it is the
    integrity check: Pillow refuses truncated or corrupt entropy-coded data."""
    im: Image.Image = Image.open(io.BytesIO(data), formats=("JPEG",))
    im.load()
    if orientation != 1:
        im = ImageOps.exif_transpose(im) or im
    return im


def _orientation(im: Image.Image) -> int:
    value = im.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _downsample_size(upright: tuple[int, int], demands: list[Demand]) -> tuple[int, int] | None:
    """Size to resample to, or None when the image is not well above the target ppi."""
    width, height = upright
    scale = 0.0
    for demand in demands:
        bx, by = demand.crop.border_px(width, height) if demand.crop else (0, 0)
        used_w, used_h = max(1, width - 2 * bx), max(1, height - 2 * by)
        scale = max(scale, demand.slot_px[0] / used_w, demand.slot_px[1] / used_h)
    if not demands or scale * DOWNSAMPLE_TOLERANCE >= 1:
        return None
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def _check_png_rows(data: bytes, png: _PngLayout, name: str) -> None:
    try:
        check_rows(data, png.idat, png.height, 1 + png.width * (1 if png.color_type == 0 else 3))
    except DamagedData:
        raise CardError(f"{name}: the image data is damaged (its compressed pixels do not decode)") from None


def _reencode_png(data, name, upright, quality, spool, turned) -> tuple[PreparedImage, Lines]:
    """An 8-bit PNG that cannot pass through (transparency, or lossy output asked for):
    decoded into numpy once, flattened where it is not opaque, encoded once."""
    pixels = png_pixels(data)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = flatten_on_white(pixels)
    return _encoded(pixels, name, upright, quality, spool, turned), ArrayLines(pixels)


def _decode(data, name, upright, target, quality, spool, turned) -> tuple[PreparedImage, Lines]:
    """Everything else, through Pillow: any mode, EXIF orientation, downsampling."""
    opened = Image.open(io.BytesIO(data), formats=FORMATS)
    if target is not None and opened.format == "JPEG":
        # DCT scaling: decode straight at 1/2, 1/4 or 1/8 size when that still covers the target.
        wanted = target if _orientation(opened) < 5 else target[::-1]
        opened.draft(opened.mode if opened.mode in ("RGB", "L") else None, wanted)
    opened.seek(0)  # first frame of GIF / WebP / TIFF
    opened.load()
    im: Image.Image = ImageOps.exif_transpose(opened) or opened
    im = _flatten(im)
    if target is not None and (im.width > target[0] or im.height > target[1]):
        im = im.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if quality < 100:
        return _encoded(im, name, upright, quality, spool, turned), ImageLines(im)
    pixels = np.asarray(im)
    return _encoded(pixels, name, upright, quality, spool, turned), ArrayLines(pixels)


def _encoded(pixels: np.ndarray | Image.Image, name: str, upright: tuple[int, int], quality: int,
             spool: Spool, turned: bool = False) -> PreparedImage:
    """Re-encoded upright pixels, turned 180° first if asked: lossless (Flate with PNG
    predictors) or JPEG below 100."""
    if turned:
        pixels = (pixels[::-1, ::-1] if isinstance(pixels, np.ndarray)
                  else pixels.transpose(Image.Transpose.ROTATE_180))
    if isinstance(pixels, np.ndarray):
        height, width = pixels.shape[:2]
        grey = pixels.ndim == 2
    else:
        width, height = pixels.size
        grey = pixels.mode == "L"
    if quality < 100:
        im = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.ascontiguousarray(pixels))
        out = io.BytesIO()
        im.save(out, "JPEG", quality=quality, subsampling=0)
        encoded, pdf_filter, predictors = out.getvalue(), "/DCTDecode", False
    else:
        assert isinstance(pixels, np.ndarray)
        encoded, pdf_filter, predictors = png_idat(pixels), "/FlateDecode", True
    colorspace = "/DeviceGray" if grey else "/DeviceRGB"
    return PreparedImage(name, width, height, 1, colorspace, pdf_filter, predictors,
                         spool.put(encoded, name), upright, passthrough=False, turned=turned)


def _flatten(im: Image.Image) -> Image.Image:
    """8-bit RGB or L, with any transparency composited onto white."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(im)
        if im.mode != "F" and arr.max(initial=0) > 255:
            arr = arr / 257.0  # 16-bit samples
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif im.mode in ("L", "RGB") and "transparency" in im.info:
        im = im.convert("LA" if im.mode == "L" else "RGBA")
    if im.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        grey = im.mode in ("LA", "La")
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(background, rgba).convert("RGB")
        return flat.convert("L") if grey else flat
    if im.mode in ("L", "RGB"):
        return im
    if im.mode == "1":
        return im.convert("L")
    return im.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV


# --------------------------------------------------------------------------- PNG structure

@dataclass
class _PngLayout:
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int
    idat: list[tuple[int, int]]
    has_transparency: bool
    has_exif: bool
    chunks: list[tuple[int, int]]   # offset and length of every chunk, through IEND

    def crcs_match(self, data: bytes) -> bool:
        """Whether every chunk's CRC (over its type and payload) is right."""
        for pos, length in self.chunks:
            (stored,) = struct.unpack_from(">I", data, pos + 8 + length)
            if zlib.crc32(memoryview(data)[pos + 4:pos + 8 + length]) != stored:
                return False
        return True

    @property
    def passthrough(self) -> bool:
        return (self.bit_depth == 8 and self.color_type in (0, 2) and self.interlace == 0
                and not self.has_transparency and not self.has_exif and bool(self.idat))

    @property
    def colorspace(self) -> str:
        return "/DeviceGray" if self.color_type == 0 else "/DeviceRGB"


def _png_layout(data: bytes) -> _PngLayout | None:
    """Walk the chunks of a PNG; None if the structure is broken (Pillow will say why)."""
    pos = len(PNG_SIGNATURE)
    header = None
    idat: list[tuple[int, int]] = []
    flags = {"tRNS": False, "eXIf": False}
    chunks: list[tuple[int, int]] = []
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return None
        chunks.append((pos, length))
        if kind == b"IHDR":
            if header is not None or length != 13:
                return None
            header = struct.unpack(">IIBBBBB", data[pos + 8:pos + 21])
        elif kind == b"IDAT":
            idat.append((pos + 8, length))
        elif kind.decode("latin-1") in flags:
            flags[kind.decode("latin-1")] = True
        elif kind == b"IEND":
            break
        pos = end
    else:
        return None
    if header is None:
        return None
    width, height, depth, color, _compression, _filter, interlace = header
    return _PngLayout(width, height, depth, color, interlace, idat, flags["tRNS"], flags["eXIf"],
                      chunks)


# --------------------------------------------------------------------------- JPEG structure

_SOF_HUFFMAN = {0xC0, 0xC1, 0xC2}
_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_frame(data: bytes) -> tuple[int, int] | None:
    """(SOF marker, component count) of a JPEG, or None if no frame header is found."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _SOF_HUFFMAN or marker in _SOF_OTHER:
            if pos + 10 > len(data):
                return None
            precision, components = data[pos + 4], data[pos + 9]
            return (marker if precision == 8 else -1), components
        if marker == 0xDA:
            return None
        pos += 2 + length
    return None


def _jpeg_passthrough(data: bytes) -> bool:
    """PDF's DCTDecode takes 8-bit Huffman JPEGs; we pass through grey and RGB ones."""
    frame = _jpeg_frame(data)
    return frame is not None and frame[0] in _SOF_HUFFMAN and frame[1] in (1, 3)


def _jpeg_components(data: bytes) -> int:
    frame = _jpeg_frame(data)
    return frame[1] if frame else 3

