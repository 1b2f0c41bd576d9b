"""Helpers for the card engine tests: synthetic card images and exact 300-dpi rendering."""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
from PIL import Image

# Saturated, well separated colours (no greys): a rendered pixel is classified by exact
# match, so anti-aliased edges and marks never pass for a card.
_LEVELS = (30, 90, 150, 210)
PALETTE: list[tuple[int, int, int]] = [c for c in itertools.product(_LEVELS, repeat=3) if len(set(c)) > 1]
WHITE = (255, 255, 255)


def solid_png(path: Path, rgb, size=(8, 11)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, tuple(rgb)).save(path)
    return path


def quadrant_image(colours, size=(40, 56)) -> Image.Image:
    """Image whose quadrants are colours[0..3] = top-left, top-right, bottom-left, bottom-right."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 2] = colours[0]
    arr[: h // 2, w // 2:] = colours[1]
    arr[h // 2:, : w // 2] = colours[2]
    arr[h // 2:, w // 2:] = colours[3]
    return Image.fromarray(arr, "RGB")


def render(pdf_path, index: int) -> np.ndarray:
    """Page `index` as an RGB array at exactly 300 dpi (one array pixel = one spec pixel).

    The scale is chosen so that the bitmap is exactly page-size: pypdfium2 rounds the
    bitmap up, and an extra column would stretch the whole page by 1/3300.
    """
    doc = pdfium.PdfDocument(str(pdf_path))
    try:
        page = doc[index]
        width_pt, height_pt = page.get_size()
        width, height = round(width_pt * 300 / 72), round(height_pt * 300 / 72)
        bitmap = page.render(scale=(width - 0.5) / width_pt, rev_byteorder=True)
        arr = bitmap.to_numpy()[:, :, :3].copy()
        assert arr.shape[:2] == (height, width), arr.shape
        return arr
    finally:
        doc.close()


def page_count(pdf_path) -> int:
    doc = pdfium.PdfDocument(str(pdf_path))
    try:
        return len(doc)
    finally:
        doc.close()


def page_text(pdf_path, index: int) -> str:
    doc = pdfium.PdfDocument(str(pdf_path))
    try:
        textpage = doc[index].get_textpage()
        return textpage.get_text_range()
    finally:
        doc.close()


def classify(arr: np.ndarray, colours) -> np.ndarray:
    """Index into `colours` of each pixel's exact colour, -1 for anything else."""
    codes = np.zeros(arr.shape[:2], np.int16)
    valid = np.ones(arr.shape[:2], bool)
    sizes = []
    for channel in range(3):
        values = sorted({c[channel] for c in colours})
        lut = np.full(256, -1, np.int16)
        lut[values] = np.arange(len(values))
        index = lut[arr[..., channel]]
        valid &= index >= 0
        codes *= len(values)
        codes += index
        sizes.append(values)
    table = np.full(len(sizes[0]) * len(sizes[1]) * len(sizes[2]), -1, np.int16)
    for number, (r, g, b) in enumerate(colours):
        code = (sizes[0].index(r) * len(sizes[1]) + sizes[1].index(g)) * len(sizes[2]) + sizes[2].index(b)
        table[code] = number
    codes[~valid] = 0
    out = table[codes]
    out[~valid] = -1
    return out


def edge_band(label_map: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels within `width` px of a boundary between different values of `label_map`."""
    edge = np.zeros(label_map.shape, bool)
    edge[:, 1:] |= label_map[:, 1:] != label_map[:, :-1]
    edge[:, :-1] |= label_map[:, 1:] != label_map[:, :-1]
    edge[1:, :] |= label_map[1:, :] != label_map[:-1, :]
    edge[:-1, :] |= label_map[1:, :] != label_map[:-1, :]
    band = edge.copy()
    for _ in range(width - 1 if width > 1 else 0):
        grown = band.copy()
        grown[:, 1:] |= band[:, :-1]
        grown[:, :-1] |= band[:, 1:]
        grown[1:, :] |= band[:-1, :]
        grown[:-1, :] |= band[1:, :]
        band = grown
    return band


def pixel_rect(rect) -> tuple[int, int, int, int]:
    """Continuous px rectangle -> the pixels more than half covered (x0, y0, x1, y1 exclusive)."""
    x0, y0, x1, y1 = rect
    return round(x0), round(y0), round(x1), round(y1)


def bbox(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# --------------------------------------------------------------------------- the spec's own numbers

SPEC = json.loads((Path(__file__).with_name("spec_layouts.json")).read_text())


@dataclass(frozen=True)
class SpecLayout:
    """One paper x card layout straight from the spec's JSON (card-format.md §2.5),
    independent of app.cards.layouts, so the tests do not check the code against itself."""

    paper: str
    card: str

    @property
    def _paper(self) -> dict:
        return SPEC["papers"][self.paper]

    @property
    def _layout(self) -> dict:
        return self._paper["layouts"][self.card]

    @property
    def page(self) -> tuple[int, int]:
        return tuple(self._paper["page_px"])

    @property
    def card_size(self) -> tuple[int, int]:
        return tuple(SPEC["card_sizes_px"][self.card])

    @property
    def bleed(self) -> tuple[int, int]:
        return tuple(self._layout["bleed"])

    @property
    def template(self) -> str:
        return self._layout["template"]

    @property
    def cols(self) -> int:
        return len(self._layout["x"])

    @property
    def rows(self) -> int:
        return len(self._layout["y"])

    @property
    def slots(self) -> int:
        return self.cols * self.rows

    def origin(self, slot: int) -> tuple[int, int]:
        row, col = divmod(slot, self.cols)
        return self._layout["x"][col], self._layout["y"][row]

    def mirror(self, slot: int) -> int:
        row, col = divmod(slot, self.cols)
        return (self.rows - 1 - row) * self.cols + col

    def rect(self, slot: int) -> tuple[int, int, int, int]:
        """Card + bleed rectangle [x0, y0, x1, y1) of a slot."""
        (x, y), (w, h), (bx, by) = self.origin(slot), self.card_size, self.bleed
        return x - bx, y - by, x + w + bx, y + h + by

    @property
    def marks(self) -> list[tuple[float, float, float, float]]:
        rects = [tuple(self._paper["reg_square_px"])]
        for mark in self._paper["reg_L_px"]:
            rects += [tuple(mark["h_arm"]), tuple(mark["v_arm"])]
        return rects


SPEC_LAYOUTS = [SpecLayout(paper, card) for paper, data in SPEC["papers"].items() for card in data["layouts"]]


# --------------------------------------------------------------------------- a realistic deck

def gradient_card(number: int, size=(825, 1125)) -> Image.Image:
    """825 x 1125 art (card art with its own bleed, 2.4 % off the standard card's ratio):
    a gradient of its own hues, never near white, so card + bleed is easy to find."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    r = (40 + 150 * x / w + number * 7) % 200 + 20
    g = (40 + 150 * y / h + number * 13) % 200 + 20
    b = np.full_like(r, (number * 37) % 200 + 20)
    return Image.fromarray(np.dstack([r, g, b]).astype(np.uint8), "RGB")


def synthetic_deck(root: Path, cards: int = 64) -> Path:
    """`cards` fronts card00.png ... and one back, in root/fronts and root/backs."""
    (root / "fronts").mkdir(parents=True, exist_ok=True)
    (root / "backs").mkdir(parents=True, exist_ok=True)
    for number in range(cards):
        gradient_card(number).save(root / "fronts" / f"card{number:02d}.png", compress_level=1)
    gradient_card(99).save(root / "backs" / "back.png", compress_level=1)
    return root


def drawn_images(pdf):
    """(page index, image width px, image height px, matrix) of every image drawn, from
    the content streams (q/Q/cm tracked), so tests see placements as a renderer does."""
    from pypdf import PdfReader
    from pypdf.generic import ContentStream

    from app.cards.placement import compose

    reader = PdfReader(pdf)
    for index, page in enumerate(reader.pages):
        xobjects = page["/Resources"].get("/XObject", {})
        stack, ctm = [], (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
        for operands, operator in ContentStream(page.get_contents(), reader).operations:
            if operator == b"q":
                stack.append(ctm)
            elif operator == b"Q":
                ctm = stack.pop()
            elif operator == b"cm":
                ctm = compose(ctm, tuple(float(v) for v in operands))
            elif operator == b"Do":
                image = xobjects[operands[0]].get_object()
                yield index, int(image["/Width"]), int(image["/Height"]), ctm
