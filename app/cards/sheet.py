"""generate_sheets: card images in, printable sheet PDF out (spec §4-§7)."""
from __future__ import annotations

import hashlib
import importlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.cards.bleed import EdgeKey, Edges
from app.cards.budget import MemoryBudget, image_cost, parallel_within
from app.cards.errors import CardError
from app.cards.images import Demand, PreparedImage, Spool, prepare_image
from app.cards.inputs import CardFiles, collect
from app.cards.layouts import LABEL_FONT_PT, PT_PER_PX, Layout, Paper
from app.cards.notices import aspect_warnings
from app.cards.options import Crop, as_int
from app.cards.placement import FillPiece, Slot, card_draws, rect_pt
from app.cards.progress import CountingWriter, Progress, ProgressCallback

if TYPE_CHECKING:
    from pypdf.generic import IndirectObject

    from app.cards.models import SheetOptions
    from app.cards.pdf import Content, SheetWriter

FRONT, BACK = "front", "back"


@dataclass
class SheetResult:
    output: Path
    pages: int
    sheets: int
    cards: int
    images: int                       # distinct image objects embedded
    roles: list[str]                  # "front" / "back" per page, in page order
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class CardRef:
    """One input file in one role: 'front', 'double_back' or 'back' (the common back)."""

    kind: str
    rel: str = ""


@dataclass(frozen=True)
class Placement:
    slot: int
    card: CardRef
    turned: bool          # back pages: the image is turned 180° (spec §5.4)
    cropped: bool         # crop applies to fronts and double-sided backs, never the common back


@dataclass
class PagePlan:
    role: str
    sheet: int
    placements: list[Placement]


def plan_pages(layout: Layout, singles: list[str], doubles: list[str], *,
               common_back: bool, skip: frozenset[int], only_fronts: bool) -> list[PagePlan]:
    """Page sequence: front, back, front, back, ... (spec §5.2-§5.5)."""
    free = [slot for slot in range(layout.slots) if slot not in skip]
    pages: list[PagePlan] = []
    sheet = 0
    for group, double in ((singles, False), (doubles, True)):
        for start in range(0, len(group), len(free)):
            sheet += 1
            chunk = list(zip(free, group[start:start + len(free)], strict=False))  # last one short
            pages.append(PagePlan(FRONT, sheet, [
                Placement(slot, CardRef("front", rel), False, True) for slot, rel in chunk]))
            if only_fronts:
                continue
            if double:
                backs = [Placement(layout.mirror(slot), CardRef("double_back", rel), True, True)
                         for slot, rel in chunk]
            elif common_back:
                # The whole sheet gets backs, even where the last front sheet is short.
                backs = [Placement(layout.mirror(slot), CardRef("back"), True, False) for slot in free]
            else:
                backs = []
            pages.append(PagePlan(BACK, sheet, sorted(backs, key=lambda p: p.slot)))
    return pages


# --------------------------------------------------------------------------- public entry

def generate_sheets(*, front_dir, output, back_dir=None, double_sided_dir=None, back_file=None,
                    options: SheetOptions | None = None, max_image_pixels=50_000_000,
                    progress: ProgressCallback | None = None,
                    memory_budget: MemoryBudget | None = None, **option_values) -> SheetResult:
    """Lay the card images out on printable sheets and write the PDF to `output`.

    front_dir is searched recursively; back_dir holds the common back (back_file picks
    one when it holds several; no back means marks-only back pages); double_sided_dir
    holds backs named like their fronts. `options` is a SheetOptions, or give its fields
    as keywords (card_size="poker", ppi=600, ...). Everything the user can get wrong raises
    CardError; inputs are never modified; `output` appears complete or not at all.
    progress(fraction, message) is called per image and per page and may raise to cancel.
    With `memory_budget`, no more images are decoded at once than it holds (app.cards.budget).
    """
    report = Progress(progress)
    report(0.0, "Checking options")
    from app.cards.models import SheetOptions  # pydantic: loaded on first use, not on import
    options = SheetOptions.parse(options, **option_values)
    layout, crop_spec = options.layout, options.crop_spec
    ppi, quality, extend, only_fronts = (options.ppi, options.quality, options.extend_corners,
                                         options.only_fronts)
    skip_set, warnings = options.skip_slots()
    label_name, name_warnings = options.label_name()
    warnings += name_warnings
    max_pixels = as_int(max_image_pixels, "max_image_pixels")
    if max_pixels < 1:
        raise CardError("max_image_pixels must be positive")

    files = collect(front_dir=front_dir, back_dir=back_dir, double_sided_dir=double_sided_dir,
                    back_file=back_file, only_fronts=only_fronts)
    _refuse_overwriting_inputs(output, files)
    pages = plan_pages(layout, files.singles, files.doubles, common_back=files.back is not None,
                       skip=skip_set, only_fronts=only_fronts)

    spool = Spool()
    try:
        images = _load_images(pages, files, layout, crop_spec, extend, ppi, quality, max_pixels,
                              spool, report.span(0.0, 0.7, 1), memory_budget)
        warnings += _aspect_warnings(pages, images, layout, crop_spec)
        from app.cards.pdf import SheetWriter  # loaded while the images decoded
        writer = SheetWriter(title=label_name)
        embedded = _lay_out(writer, pages, images, layout, crop_spec, extend, label_name,
                            report.span(0.7, 0.8, len(pages)))
        total = sum(image.source.length for image in embedded.values())
        to_file = report.span(0.8, 1.0, total)
        writer.write(output, wrap=lambda fh: CountingWriter(fh, total, to_file))
    finally:
        spool.close()
    report(1.0, "Done")
    return SheetResult(
        output=Path(output),
        pages=len(pages),
        sheets=pages[-1].sheet if pages else 0,
        cards=len(files.singles) + len(files.doubles),
        images=len(embedded),
        roles=[page.role for page in pages],
        warnings=warnings,
    )


def _refuse_overwriting_inputs(output, files: CardFiles) -> None:
    target = Path(output)
    if target.is_dir():
        raise CardError(f"output: {os.fspath(output)!r} is a folder; give a file name such as sheets.pdf")
    if not target.exists():
        return
    inputs = [*files.fronts.values(), *files.double_backs.values()]
    if files.back is not None:
        inputs.append(files.back)
    for path in inputs:
        try:
            if target.samefile(path):
                raise CardError(f"output: {os.fspath(output)!r} is one of the input images")
        except OSError:
            continue


# --------------------------------------------------------------------------- images

def _paths(files: CardFiles) -> dict[CardRef, tuple[Path, str]]:
    # The user's own names: a front by its path in the fronts folder, backs said as such.
    found = {CardRef("front", rel): (path, rel) for rel, path in files.fronts.items()}
    found.update({CardRef("double_back", rel): (path, f"double-sided back {rel}")
                  for rel, path in files.double_backs.items()})
    if files.back is not None:
        found[CardRef("back")] = (files.back, f"back image {files.back.name}")
    return found


def _edge_key(layout: Layout, placement: Placement, crop: Crop | None, extend: int) -> EdgeKey:
    return EdgeKey((layout.card_w, layout.card_h), crop if placement.cropped else None,
                   extend, placement.turned)


def loader_threads() -> int:
    """How many images are decoded at once at most (before any memory budget): the
    decoders run outside the GIL, one per core, and more than four gain nothing."""
    return min(4, os.cpu_count() or 1)


def _load_images(pages, files, layout, crop, extend, ppi, quality, max_pixels, spool,
                 report, memory_budget=None) -> dict[CardRef, PreparedImage]:
    """Load every image that appears on a page, in parallel, in page order."""
    paths = _paths(files)
    slot_px = (layout.card_w * ppi / 300, layout.card_h * ppi / 300)
    demands: dict[CardRef, set[Demand]] = {}
    for page in pages:
        for placement in page.placements:
            demand = Demand(slot_px, crop if placement.cropped else None,
                            _edge_key(layout, placement, crop, extend))
            demands.setdefault(placement.card, set()).add(demand)

    # One job per distinct file content, however many roles and names it has.
    same = _identical_files([paths[ref][0] for ref in demands])
    jobs: dict[Path, list[CardRef]] = {}
    for ref in demands:
        jobs.setdefault(same[paths[ref][0]], []).append(ref)
    workers = min(loader_threads(), max(1, len(jobs)))
    if memory_budget is not None:  # before any decoding; CardError if one cannot fit
        costs = [image_cost(path, paths[refs[0]][1]) for path, refs in jobs.items()]
        workers = parallel_within(costs, memory_budget, workers)
    loaded: dict[CardRef, PreparedImage] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cards-load") as pool:
        futures: list[tuple[list[CardRef], Future]] = []
        for path, refs in jobs.items():
            wanted = sorted({d for ref in refs for d in demands[ref]}, key=repr)
            futures.append((refs, pool.submit(
                prepare_image, path, name=paths[refs[0]][1], demands=wanted,
                max_pixels=max_pixels, quality=quality, spool=spool)))
        try:
            # The PDF writer's imports (pypdf: 50 ms of one core) load while the loaders
            # decode outside the GIL: a command-line call would otherwise pay them alone.
            importlib.import_module("app.cards.pdf")
            for done, (refs, future) in enumerate(futures, start=1):
                image = future.result()
                for ref in refs:
                    loaded[ref] = image
                report(done / len(futures), f"Loaded image {done} of {len(futures)}")
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return loaded


def _identical_files(paths: list[Path]) -> dict[Path, Path]:
    """Each file -> the first file with the same bytes. Only equal sizes get hashed."""
    by_size: dict[int, list[Path]] = {}
    for path in dict.fromkeys(paths):
        try:
            size = path.stat().st_size
        except OSError:
            size = -1 - len(by_size)      # unreadable: stays on its own; loading reports it
        by_size.setdefault(size, []).append(path)
    same: dict[Path, Path] = {}
    for group in by_size.values():
        first_by_digest: dict[str, Path] = {}
        for path in group:
            key = _digest(path) if len(group) > 1 else str(path)
            same[path] = first_by_digest.setdefault(key or str(path), path)
    return same


def _digest(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def _aspect_warnings(pages, images, layout: Layout, crop: Crop | None) -> list[str]:
    uses = {}
    for page in pages:
        for placement in page.placements:
            image = images[placement.card]
            use_crop = crop if placement.cropped else None
            uses[(image.name, use_crop)] = (image.name, image.original_size, use_crop)
    return aspect_warnings(uses.values(), layout.card_size, (layout.card_w, layout.card_h))


# --------------------------------------------------------------------------- pages

def draw_marks(content: Content, paper: Paper) -> None:
    height_pt = paper.size_pt[1]
    for rect in paper.marks:
        content.fill_rect(*rect_pt(rect, height_pt))


def label_for(sheet: int, template: str, name: str | None) -> str:
    text = f"sheet: {sheet}, template: {template}"
    return f"name: {name}, {text}" if name else text


def draw_label(content: Content, paper: Paper, text: str) -> None:
    """Text end at the paper's label anchor, baseline 37 px below its ascender line (§6)."""
    from app.cards.pdf import text_width

    x = paper.label_x_px * PT_PER_PX
    if paper.label_align == "right":
        x -= text_width(text, LABEL_FONT_PT)
    baseline = paper.size_pt[1] - paper.label_baseline_px * PT_PER_PX
    content.text("F1", LABEL_FONT_PT, x, baseline, text)


def _lay_out(writer: SheetWriter, pages: list[PagePlan], images: dict[CardRef, PreparedImage],
             layout: Layout, crop: Crop | None, extend: int, name: str | None,
             report) -> dict[str, PreparedImage]:
    from app.cards.pdf import Content

    paper = layout.paper
    objects = _ImageObjects(writer)
    bleed_x, bleed_y = layout.bleed
    for number, page in enumerate(pages, start=1):
        content = Content()
        draw_marks(content, paper)
        used: dict[str, IndirectObject] = {}
        for placement in page.placements:       # slot order: later slots win overlaps
            image = images[placement.card]
            edges = image.edges[_edge_key(layout, placement, crop, extend)]
            x, y = layout.slot_origin(placement.slot)
            slot = Slot(x, y, layout.card_w, layout.card_h, bleed_x, bleed_y, extend)
            for piece in card_draws(image, edges, slot, page_height_pt=paper.size_pt[1],
                                    back=placement.turned):
                if isinstance(piece, FillPiece):
                    content.fill_rect(*piece.rect, rgb=piece.rgb)
                    continue
                xname = objects.name(image, edges, piece.piece)
                used[xname] = objects.refs[xname]
                content.image(xname, piece.matrix, piece.clip)
        front = page.role == FRONT
        if front:
            draw_label(content, paper, label_for(page.sheet, layout.template, name))
        writer.add_page(paper.size_pt, content, role=page.role, images=used, text=front)
        report(number, f"Laid out page {number} of {len(pages)}")
    return objects.cards


class _ImageObjects:
    """Each card image once, and each of its bleed strips once per way it is placed."""

    def __init__(self, writer: SheetWriter):
        self._writer = writer
        self._names: dict[tuple, str] = {}
        self.refs: dict[str, IndirectObject] = {}
        self.cards: dict[str, PreparedImage] = {}

    def name(self, image: PreparedImage, edges: Edges, piece: str) -> str:
        key = (id(image),) if piece == "card" else (id(image), id(edges), piece)
        xname = self._names.get(key)
        if xname is None:
            if piece == "card":
                xname = f"Im{len(self.cards) + 1}"
                self.cards[xname] = image
                self.refs[xname] = self._writer.add_image(image)
            else:
                xname = f"S{len(self._names) - len(self.cards) + 1}"
                self.refs[xname] = self._writer.add_strip(getattr(edges, piece))
            self._names[key] = xname
        return xname
