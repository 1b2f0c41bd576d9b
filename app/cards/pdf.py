"""Small layer over pypdf for writing sheet PDFs.

pypdf writes objects one after another straight to the output file, so image streams
can be lazy: their bytes are copied from the input files while the file is written and
never all sit in memory together. Content streams are built here from plain PDF
operators (rectangles, clips, image placements, one line of text).
"""
from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfWriter
from pypdf.constants import PageLabelStyle
from pypdf.generic import (
    DictionaryObject,
    FloatObject,
    IndirectObject,
    NameObject,
    NumberObject,
    StreamObject,
)

from app.cards.bleed import Strip
from app.cards.deflate import deflated
from app.cards.errors import CardError
from app.cards.images import BytesSource, PreparedImage

CREATOR = "Silhouette Card Maker"
# Page labels carry each page's role; offset_pdf reads them back (`Front 1`, `Back 1`, ...).
FRONT_PREFIX = "Front "
BACK_PREFIX = "Back "


def num(value: float) -> str:
    """Compact PDF number with 1/10000 pt precision (0.0004 px at 300 ppi), no exponent."""
    text = f"{value:.4f}".rstrip("0")
    if text.endswith("."):
        text = text[:-1]
    return "0" if text == "-0" else text


class Content:
    """Accumulates the operators of one page's content stream."""

    def __init__(self):
        self._ops: list[str] = []

    def fill_rect(self, x: float, y: float, w: float, h: float, rgb=(0, 0, 0)) -> None:
        self._ops.append(f"{_rgb(rgb)} rg {num(x)} {num(y)} {num(w)} {num(h)} re f")

    def image(self, name: str, matrix, clip=None) -> None:
        """Draw XObject `name` with matrix `cm`, optionally clipped to (x, y, w, h) pt."""
        clip_ops = f"{num(clip[0])} {num(clip[1])} {num(clip[2])} {num(clip[3])} re W n " if clip else ""
        self._ops.append(f"q {clip_ops}{' '.join(num(v) for v in matrix)} cm /{name} Do Q")

    def text(self, font: str, size: float, x: float, y: float, text: str, rgb=(0, 0, 0)) -> None:
        """One line of WinAnsi text with its baseline starting at (x, y) pt."""
        self._ops.append(
            f"BT /{font} {num(size)} Tf {_rgb(rgb)} rg {num(x)} {num(y)} Td ({_pdf_string(text)}) Tj ET"
        )

    def data(self) -> bytes:
        return ("\n".join(self._ops) + "\n").encode("latin-1")


def text_width(text: str, size: float) -> float:
    """Width in points of `text` set in Helvetica, as Content.text draws it (WinAnsi bytes,
    "?" for what cp1252 lacks), from the standard AFM metrics. reportlab's data tables are
    read directly: its pdfmetrics module costs every command-line call 30 ms to import."""
    from reportlab.pdfbase._fontdata_enc_winansi import WinAnsiEncoding
    from reportlab.pdfbase._fontdata_widths_helvetica import widths

    glyphs = (WinAnsiEncoding[byte] for byte in text.encode("cp1252", "replace"))
    return size * sum(widths.get(glyph or "", 0) for glyph in glyphs) / 1000


def _rgb(rgb) -> str:
    return " ".join(num(c / 255) for c in rgb)


def _pdf_string(text: str) -> str:
    raw = text.encode("cp1252", "replace").decode("latin-1")
    return raw.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


@dataclass(frozen=True)
class StripImage:
    """The parts of PreparedImage that LazyImage reads, for a bleed strip."""

    width: int
    height: int
    colorspace: str
    filter: str
    png_predictors: bool
    source: BytesSource


class LazyImage(StreamObject):
    """Image XObject whose data is produced by its source at write time."""

    def __init__(self, image: PreparedImage | StripImage):
        super().__init__()
        self._image = image
        entries = {
            "/Type": NameObject("/XObject"),
            "/Subtype": NameObject("/Image"),
            "/Width": NumberObject(image.width),
            "/Height": NumberObject(image.height),
            "/ColorSpace": NameObject(image.colorspace),
            "/BitsPerComponent": NumberObject(8),
            "/Filter": NameObject(image.filter),
        }
        if image.png_predictors:
            entries["/DecodeParms"] = DictionaryObject({
                NameObject("/Predictor"): NumberObject(15),
                NameObject("/Colors"): NumberObject(1 if image.colorspace == "/DeviceGray" else 3),
                NameObject("/BitsPerComponent"): NumberObject(8),
                NameObject("/Columns"): NumberObject(image.width),
            })
        self.update({NameObject(k): v for k, v in entries.items()})

    def get_data(self) -> bytes:
        # Only for callers that inspect the object; the writer streams instead.
        buf = io.BytesIO()
        self._image.source.copy_to(buf)
        return buf.getvalue()

    def write_to_stream(self, stream, *args) -> None:
        # The dictionary holds only names and integers: serialize it directly, which
        # is much cheaper than pypdf's generic path for every image.
        entries = "".join(f"{key} {value}\n" for key, value in self.items() if key != "/DecodeParms")
        parms = self.get("/DecodeParms")
        if parms is not None:
            entries += "/DecodeParms << " + " ".join(f"{k} {v}" for k, v in parms.items()) + " >>\n"
        stream.write(f"<<\n{entries}/Length {self._image.source.length}\n>>\nstream\n".encode("ascii"))
        self._image.source.copy_to(stream)
        stream.write(b"\nendstream")


class SheetWriter:
    """Builds a PDF page by page; images and the font are shared by all pages."""

    def __init__(self, title: str | None = None):
        self._writer = PdfWriter()
        info = {"/Creator": CREATOR, "/Producer": CREATOR}
        if title:
            info["/Title"] = title
        self._writer.add_metadata(info)
        self._font: IndirectObject | None = None
        self.roles: list[str] = []

    def add_image(self, image: PreparedImage) -> IndirectObject:
        return self._register(LazyImage(image))

    def add_strip(self, strip: Strip) -> IndirectObject:
        """A one-pixel bleed strip: a few kB of samples, deflated in memory."""
        return self._register(LazyImage(StripImage(
            strip.width, strip.height, "/DeviceGray" if strip.grey else "/DeviceRGB",
            "/FlateDecode", False, BytesSource(deflated(strip.samples)))))

    def font(self) -> IndirectObject:
        if self._font is None:
            self._font = self._register(DictionaryObject({
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
                NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
            }))
        return self._font

    def add_page(self, size_pt: tuple[float, float], content: Content, *, role: str,
                 images: dict[str, IndirectObject] | None = None, text: bool = False) -> None:
        page = self._writer.add_blank_page(width=size_pt[0], height=size_pt[1])
        # Exact page sizes such as A4's 842.16 pt: pypdf would round ints otherwise.
        page.mediabox.upper_right = (FloatObject(size_pt[0]), FloatObject(size_pt[1]))
        resources = DictionaryObject()
        if images:
            resources[NameObject("/XObject")] = DictionaryObject(
                {NameObject(f"/{name}"): ref for name, ref in images.items()})
        if text:
            resources[NameObject("/Font")] = DictionaryObject({NameObject("/F1"): self.font()})
        page[NameObject("/Resources")] = resources
        stream = StreamObject()
        stream.set_data(deflated(content.data()))
        stream[NameObject("/Filter")] = NameObject("/FlateDecode")
        page[NameObject("/Contents")] = self._register(stream)
        self.roles.append(role)

    def write(self, output: str | os.PathLike, wrap: Callable | None = None) -> None:
        """Write atomically: a killed process leaves no half PDF at `output`.

        `wrap` may wrap the open file, e.g. to report progress while images are copied.
        """
        self._label_pages()
        write_atomically(output, lambda fh: self._writer.write(wrap(fh) if wrap else fh))

    def _label_pages(self) -> None:
        counts = {"front": 0, "back": 0}
        for index, role in enumerate(self.roles):
            counts[role] += 1
            prefix = FRONT_PREFIX if role == "front" else BACK_PREFIX
            self._writer.set_page_label(index, index, style=PageLabelStyle.DECIMAL, prefix=prefix,
                                        start=counts[role])

    def _register(self, obj) -> IndirectObject:
        # pypdf's way to add an indirect object; it has no public alias.
        return self._writer._add_object(obj)


def write_atomically(output: str | os.PathLike, write: Callable) -> None:
    """Call write(fileobj) on a temporary file beside `output`, then rename it into place."""
    target = Path(output)
    folder = target.parent
    if not folder.is_dir():
        raise CardError(f"output: folder {os.fspath(folder)!r} does not exist")
    tmp = folder / f".{target.name}.{secrets.token_hex(4)}.part"
    try:
        # O_EXCL: never follow or clobber someone else's file; 0o666 lets the umask decide.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise CardError(f"output: cannot write to {os.fspath(folder)!r} ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        # No fsync: the rename already guarantees that a killed process leaves either
        # the old file or the complete new one, and syncing would double the run time.
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CardError(f"output: cannot write {os.fspath(target)!r} ({exc.strerror})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

