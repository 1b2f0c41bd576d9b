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
    if warnings:
        text += "; " + "; ".join(warnings)
    return text[:1000]


def generate(inputs: Path, params: dict, output: Path, progress: Progress, *,
             settings: Settings) -> str:
    """Returns a one-line summary (with the engine's warnings) for the job's message."""
    from app import cards

    back_dir = _folder(inputs / "back")
    result = cards.generate_sheets(
        front_dir=inputs / "fronts",
        back_dir=back_dir,
        double_sided_dir=_folder(inputs / "double_sided"),
        output=output,
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
        progress=progress,
    )
    return _summary(f"{result.sheets} sheet(s), {result.pages} page(s), {result.cards} card(s)",
                    list(result.warnings))


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
