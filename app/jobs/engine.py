"""The one place where jobs call the card engine (`app.cards`).

Per job kind: the params model a job stores and the engine call that makes its PDF. The
API validates a submission into the kind's model and stores `model_dump(mode="json")`;
the worker validates the stored params into the same model again, so a job can carry no
value the engine would refuse, and an old or hand-made row fails with the engine's
message instead of a traceback.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import Field

from app.cards import calibration_sheet, generate_sheets, offset_pdf
from app.cards.budget import MemoryBudget
from app.cards.errors import CardError
from app.cards.models import CalibrationOptions, OffsetOptions, Options, SheetOptions
from app.jobs.limits import job_budget
from app.settings import Settings

# Exceptions that mean "the user's input is wrong": the job fails at once with the
# message, no retry. (OptionError, for stored params the models refuse, is a CardError.)
USER_ERRORS: tuple[type[BaseException], ...] = (CardError,)

Progress = Callable[[float, str], None] | None


class SheetJobParams(SheetOptions):
    """A sheets job: its sheet options and, for the record, how many files were uploaded."""

    files: dict[str, int] | None = None
    # The owner's saved printer profile, when the submission asked for it: the back pages
    # of the new PDF are shifted by it (issue 10).
    printer_offset: OffsetOptions | None = None


class OffsetJobParams(OffsetOptions):
    """An offset job: the shift, and the job whose PDF it shifts when not an upload."""

    source_job_id: str | None = Field(None, max_length=64)


P = TypeVar("P", bound=Options)


@dataclass(frozen=True)
class JobKind(Generic[P]):
    """`make(inputs, params, output, progress, settings)` writes `output` and returns a
    one-line summary for the job's message; `inputs` is the job's upload folder."""

    params: type[P]
    make: Callable[..., str]
    # Decodes images: `make` takes the memory budget as a sixth argument (None: a
    # Celery worker's).
    budgeted: bool = False


def _summary(text: str, warnings: list[str]) -> str:
    """The summary line, then the engine's warnings: already one line per kind, with the
    user's own file names (app.cards.notices). The API splits them."""
    lines = [text, *(line for line in warnings if line.strip())]
    return "\n".join(line[:500] for line in lines[:20])[:2000]


def _folder(path: Path) -> Path | None:
    return path if path.is_dir() and any(path.iterdir()) else None


def _sheets(inputs: Path, params: SheetJobParams, output: Path, progress: Progress,
            settings: Settings, budget: MemoryBudget | None = None) -> str:
    shift = params.printer_offset
    target = output.with_name(f".{output.name}.unshifted") if shift else output
    try:
        result = generate_sheets(
            front_dir=inputs / "fronts", back_dir=_folder(inputs / "back"),
            double_sided_dir=_folder(inputs / "double_sided"), output=target,
            options=params.model_copy(update={"printer_offset": None}),
            max_image_pixels=settings.MAX_IMAGE_PIXELS,
            memory_budget=budget or job_budget(settings),
            progress=_scaled(progress, 0.0, 0.9 if shift else 1.0))
        summary = f"{result.sheets} sheet(s), {result.pages} page(s), {result.cards} card(s)"
        warnings = list(result.warnings)
        if shift:
            shifted = offset_pdf(input=target, output=output, x=shift.x, y=shift.y,
                                 progress=_scaled(progress, 0.9, 1.0))
            warnings += shifted.warnings
            summary += f", back pages shifted by ({shift.x}, {shift.y}) px"
    finally:
        if shift:
            target.unlink(missing_ok=True)
    return _summary(summary, warnings)


def _scaled(progress: Progress, start: float, end: float) -> Progress:
    if progress is None:
        return None
    return lambda fraction, message: progress(start + (end - start) * fraction, message)


def _offset(inputs: Path, params: OffsetJobParams, output: Path, progress: Progress,
            settings: Settings) -> str:
    source = inputs / "input.pdf"
    if not source.is_file():
        raise CardError("the job's input PDF is missing (it may have expired)")
    result = offset_pdf(input=source, output=output, x=params.x, y=params.y, progress=progress)
    return _summary(f"{len(result.shifted)} of {result.pages} page(s) shifted by "
                    f"({params.x}, {params.y}) px", list(result.warnings))


def _calibration(inputs: Path, params: CalibrationOptions, output: Path, progress: Progress,
                 settings: Settings) -> str:
    calibration_sheet(paper_size=params.paper_size, output=output, progress=progress)
    return f"calibration sheet for {params.paper_size}"


def _synthetic(output: Path, seconds: float) -> str:
    """JOB_TEST_SLEEP_SECONDS (tests and bench/cluster.py): wait instead of working, so
    coordination shows and not the CPU; the output is a tiny placeholder, not a PDF."""
    time.sleep(seconds)
    output.write_bytes(b"%PDF-1.4\n% synthetic test output\n%%EOF\n")
    return f"synthetic job: slept {seconds:g}s"


KINDS: dict[str, JobKind[Any]] = {
    "sheets": JobKind(SheetJobParams, _sheets, budgeted=True),
    "offset": JobKind(OffsetJobParams, _offset),
    "calibration": JobKind(CalibrationOptions, _calibration),
}


def make_pdf(kind: str, stored_params: dict, inputs: Path, output: Path, progress: Progress,
             *, settings: Settings, memory_budget: MemoryBudget | None = None) -> str:
    """Validate a job's stored params into its kind's model and let the engine write `output`.

    Sheets jobs decode within `memory_budget` (default: a Celery worker's, app.jobs.limits)."""
    job_kind = KINDS.get(kind)
    if job_kind is None:
        raise CardError(f"unknown job kind {kind!r}")
    if settings.JOB_TEST_SLEEP_SECONDS is not None:
        return _synthetic(output, settings.JOB_TEST_SLEEP_SECONDS)
    params = job_kind.params.parse(stored_params)
    if job_kind.budgeted:
        return job_kind.make(inputs, params, output, progress, settings, memory_budget)
    return job_kind.make(inputs, params, output, progress, settings)
