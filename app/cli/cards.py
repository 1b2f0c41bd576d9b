"""`flask cards ...`: the card engine from the command line.

Every user mistake (bad option, unreadable image, impossible layout) ends with one
line on stderr and exit code 1; tracebacks are left for real bugs.
"""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from app.cards.calibration import calibration_sheet
from app.cards.errors import CardError
from app.cards.layouts import CARD_SIZES, PAPERS, supported_layouts
from app.cards.models import CalibrationOptions, OffsetOptions, SheetOptions
from app.cards.offset import offset_pdf
from app.cards.options import PPI_RANGE
from app.cards.sheet import generate_sheets

DEFAULT_MAX_PIXELS = 50_000_000
# Defaults and help come from the option models, which also do the checking.
SHEET, OFFSET = SheetOptions(), OffsetOptions()


def _help(model, field: str) -> str:
    text = model.model_fields[field].description or ""
    return text[:1].upper() + text[1:] + "."


class _OneLineErrors:
    """Turns click's usage errors (usage text, exit 2) into our one-line exit 1."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise click.ClickException(exc.format_message()) from None


class _Command(_OneLineErrors, click.Command):
    pass


class _Group(_OneLineErrors, AppGroup):
    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise click.ClickException(exc.format_message()) from None


cards_cli = _Group("cards", help="Make Silhouette card sheets, offset back pages, print calibration sheets.")


def _max_pixels() -> int:
    try:
        return int(current_app.config["SETTINGS"].MAX_IMAGE_PIXELS)
    except (RuntimeError, KeyError, AttributeError, TypeError, ValueError):
        return DEFAULT_MAX_PIXELS


def _warn(warnings: list[str]) -> None:
    for text in warnings:
        click.echo(f"warning: {text}", err=True)


@cards_cli.command("generate", cls=_Command)
@click.option("--front-dir", required=True, type=click.Path(),
              help="Folder of card fronts (searched recursively).")
@click.option("--back-dir", type=click.Path(), help="Folder with the common back image.")
@click.option("--back-file", type=click.Path(),
              help="Which image of --back-dir is the back, if it holds several.")
@click.option("--double-sided-dir", type=click.Path(),
              help="Backs of double-sided cards, named like their fronts.")
@click.option("--output", required=True, type=click.Path(), help="PDF file to write.")
@click.option("--card-size", default=SHEET.card_size, show_default=True, type=click.Choice(list(CARD_SIZES)))
@click.option("--paper-size", default=SHEET.paper_size, show_default=True, type=click.Choice(list(PAPERS)))
@click.option("--only-fronts", is_flag=True, help=_help(SheetOptions, "only_fronts"))
@click.option("--crop", help=_help(SheetOptions, "crop"))
@click.option("--extend-corners", default=SHEET.extend_corners, show_default=True, type=int,
              help=_help(SheetOptions, "extend_corners"))
@click.option("--ppi", default=SHEET.ppi, show_default=True, type=int,
              help=f"Image resolution target ({PPI_RANGE[0]}-{PPI_RANGE[1]}).")
@click.option("--quality", default=SHEET.quality, show_default=True, type=int,
              help=_help(SheetOptions, "quality"))
@click.option("--skip", type=int, multiple=True, help="Slot index to leave empty (repeatable; 0 = top left).")
@click.option("--name", help=_help(SheetOptions, "name"))
def generate_command(front_dir, back_dir, back_file, double_sided_dir, output, card_size, paper_size,
                     only_fronts, crop, extend_corners, ppi, quality, skip, name):
    """Lay card images out on printable sheets."""
    try:
        options = SheetOptions.parse(
            card_size=card_size, paper_size=paper_size, only_fronts=only_fronts, crop=crop,
            extend_corners=extend_corners, ppi=ppi, quality=quality, skip=skip, name=name)
        result = generate_sheets(
            front_dir=front_dir, back_dir=back_dir, back_file=back_file,
            double_sided_dir=double_sided_dir, output=output, options=options,
            max_image_pixels=_max_pixels(),
        )
    except CardError as exc:
        raise click.ClickException(str(exc)) from None
    _warn(result.warnings)
    click.echo(f"Wrote {result.output}: {result.pages} pages, {result.sheets} sheets, {result.cards} cards")


@cards_cli.command("offset", cls=_Command)
@click.argument("input_pdf", metavar="IN.pdf", type=click.Path())
@click.option("--output", required=True, type=click.Path(), help="PDF file to write.")
@click.option("-x", "x", default=OFFSET.x, show_default=True, type=int, help=_help(OffsetOptions, "x"))
@click.option("-y", "y", default=OFFSET.y, show_default=True, type=int, help=_help(OffsetOptions, "y"))
def offset_command(input_pdf, output, x, y):
    """Shift the back pages of a sheet PDF."""
    try:
        shift = OffsetOptions.parse(x=x, y=y)
        result = offset_pdf(input=input_pdf, output=output, x=shift.x, y=shift.y)
    except CardError as exc:
        raise click.ClickException(str(exc)) from None
    _warn(result.warnings)
    pages = ", ".join(map(str, result.shifted)) or "none"
    click.echo(f"Wrote {result.output}: moved pages {pages} by x={x}, y={y} px")


@cards_cli.command("calibration", cls=_Command)
@click.option("--paper-size", default=CalibrationOptions().paper_size, show_default=True,
              type=click.Choice(list(PAPERS)))
@click.option("--output", required=True, type=click.Path(), help="PDF file to write.")
def calibration_command(paper_size, output):
    """Write the two-page offset calibration sheet."""
    try:
        options = CalibrationOptions.parse(paper_size=paper_size)
        path = calibration_sheet(paper_size=options.paper_size, output=output)
    except CardError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {path}")


@cards_cli.command("layouts", cls=_Command)
def layouts_command():
    """List the supported paper x card size combinations."""
    header = ("paper", "card", "grid", "per sheet", "card mm", "template")
    rows = [
        (r["paper_size"], r["card_size"], f"{r['cols']} x {r['rows']}", str(r["cards_per_sheet"]),
         "{:.2f} x {:.2f}".format(*r["card_mm"]), r["template"])
        for r in supported_layouts()
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
