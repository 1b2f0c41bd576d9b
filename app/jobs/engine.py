"""The one place where jobs call the card engine (`app.cards`).

Keeps the mapping from a job's stored params and upload folder to the engine's keyword
arguments in one module, so an engine signature change touches nothing else.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from app.cards.errors import CardError
from app.settings import Settings

# Exceptions that mean "the user's input is wrong": the job fails at once with the
# message, no retry.
USER_ERRORS: tuple[type[BaseException], ...] = (CardError,)

Progress = Callable[[float, str], None] | None


def _folder(path: Path) -> Path | None:
    return path if path.is_dir() and any(path.iterdir()) else None


def _summary(text: str, warnings: list[str]) -> str:
    """The summary line, then one line per group of warnings (the API splits them)."""
    from app.jobs.warnings import group_warnings

    lines = [text, *group_warnings(warnings)]
    return "\n".join(line[:500] for line in lines[:20])[:2000]


def generate(inputs: Path, params: dict, output: Path, progress: Progress, *,
             settings: Settings) -> str:
    """Returns a one-line summary (with the engine's warnings) for the job's message.

    With params["printer_offset"] ({"x", "y"}: the owner's saved printer profile), the
    back pages of the new sheets are shifted by it before the PDF is handed out."""
    from app import cards

    shift = params.get("printer_offset")
    target = output.with_name(f".{output.name}.unshifted") if shift else output
    back_dir = _folder(inputs / "back")
    try:
        result = cards.generate_sheets(
            front_dir=inputs / "fronts",
            back_dir=back_dir,
            double_sided_dir=_folder(inputs / "double_sided"),
            output=target,
            card_size=params.get("card_size", "standard"),
            paper_size=params.get("paper_size", "letter"),
            only_fronts=bool(params.get("only_fronts", False)),
            crop=params.get("crop"),
            extend_corners=int(params.get("extend_corners", 0)),
            ppi=int(params.get("ppi", 300)),
            quality=int(params.get("quality", 100)),
            skip=list(params.get("skip") or ()),
            name=params.get("name"),
            max_image_pixels=settings.MAX_IMAGE_PIXELS,
            progress=_scaled(progress, 0.0, 0.9 if shift else 1.0),
        )
        warnings = list(result.warnings)
        summary = f"{result.sheets} sheet(s), {result.pages} page(s), {result.cards} card(s)"
        if shift:
            shifted = cards.offset_pdf(input=target, output=output, x=int(shift["x"]),
                                       y=int(shift["y"]), progress=_scaled(progress, 0.9, 1.0))
            warnings += shifted.warnings
            summary += f", back pages shifted by ({shift['x']}, {shift['y']}) px"
    finally:
        if shift:
            target.unlink(missing_ok=True)
    return _summary(summary, warnings)


def _scaled(progress: Progress, start: float, end: float) -> Progress:
    if progress is None:
        return None
    return lambda fraction, message: progress(start + (end - start) * fraction, message)


def offset(source: Path, x: int, y: int, output: Path, progress: Progress) -> str:
    from app import cards

    if not source.is_file():
        raise CardError("the job's input PDF is missing (it may have expired)")
    result = cards.offset_pdf(input=source, output=output, x=x, y=y, progress=progress)
    return _summary(f"{len(result.shifted)} of {result.pages} page(s) shifted by ({x}, {y}) px",
                    list(result.warnings))


def calibration(paper_size: str, output: Path, progress: Progress) -> str:
    from app import cards

    cards.calibration_sheet(paper_size=paper_size, output=output, progress=progress)
    return f"calibration sheet for {paper_size}"
