"""`scm-cards ...`: the card engine from the command line, without the web application.

The same commands serve `flask --app app cards ...` (app.cli.cards adds them to its
group). Every call pays for its imports, so only click and the layout tables load up
front; each command imports the engine parts it uses when it runs.

Every user mistake (bad option, unreadable image, impossible layout) ends with one
line on stderr and exit code 1; tracebacks are left for real bugs.
"""
from __future__ import annotations

from collections.abc import Callable

import click

from app.cards.layouts import CARD_SIZES, PAPERS

DEFAULT_MAX_PIXELS = 50_000_000
CUT_FORMATS = ("svg", "dxf")


class OneLineErrors(click.Command):
    """Turns click's usage errors (usage text, exit 2) into our one-line exit 1."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise click.ClickException(exc.format_message()) from None


class Command(OneLineErrors):
    pass


class Group(OneLineErrors, click.Group):
    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise click.ClickException(exc.format_message()) from None


def _card_errors(work: Callable):
    from app.cards.errors import CardError
    try:
        return work()
    except CardError as exc:
        raise click.ClickException(str(exc)) from None


def _warn(warnings: list[str]) -> None:
    for text in warnings:
        click.echo(f"warning: {text}", err=True)


paper_option = click.option("--paper-size", default="letter", show_default=True,
                            type=click.Choice(list(PAPERS)))
card_option = click.option("--card-size", default="standard", show_default=True,
                           type=click.Choice(list(CARD_SIZES)))
output_option = click.option("--output", required=True, type=click.Path(), help="File to write.")


def _generate(max_pixels: Callable[[], int]) -> click.Command:
    @click.command("generate", cls=Command)
    @click.option("--front-dir", required=True, type=click.Path(),
                  help="Folder of card fronts (searched recursively).")
    @click.option("--back-dir", type=click.Path(), help="Folder with the common back image.")
    @click.option("--back-file", type=click.Path(),
                  help="Which image of --back-dir is the back, if it holds several.")
    @click.option("--double-sided-dir", type=click.Path(),
                  help="Backs of double-sided cards, named like their fronts.")
    @output_option
    @card_option
    @paper_option
    @click.option("--only-fronts", is_flag=True, help="Front pages only, no back pages.")
    @click.option("--crop", help="Border to remove: percent (6.5), millimetres (3mm) or inches (0.125in).")
    @click.option("--extend-corners", default=0, show_default=True, type=int,
                  help="Px to replace at the card edges.")
    @click.option("--ppi", default=300, show_default=True, type=int,
                  help="Image resolution target (72-1200).")
    @click.option("--quality", default=100, show_default=True, type=int, help="100 = lossless; lower = JPEG.")
    @click.option("--skip", type=int, multiple=True, help="Slot index to leave empty (repeatable).")
    @click.option("--name", help="Name printed in the sheet label.")
    def generate_command(**options):
        """Lay card images out on printable sheets."""
        from app.cards.sheet import generate_sheets
        result = _card_errors(lambda: generate_sheets(**options, max_image_pixels=max_pixels()))
        _warn(result.warnings)
        click.echo(f"Wrote {result.output}: {result.pages} pages, {result.sheets} sheets, "
                   f"{result.cards} cards")
    return generate_command


def _offset() -> click.Command:
    @click.command("offset", cls=Command)
    @click.argument("input_pdf", metavar="IN.pdf", type=click.Path())
    @output_option
    @click.option("-x", "x", default=0, show_default=True, type=int,
                  help="Px (300 ppi) to move back pages right.")
    @click.option("-y", "y", default=0, show_default=True, type=int,
                  help="Px (300 ppi) to move back pages down.")
    def offset_command(input_pdf, output, x, y):
        """Shift the back pages of a sheet PDF."""
        from app.cards.offset import offset_pdf
        result = _card_errors(lambda: offset_pdf(input=input_pdf, output=output, x=x, y=y))
        _warn(result.warnings)
        pages = ", ".join(map(str, result.shifted)) or "none"
        click.echo(f"Wrote {result.output}: moved pages {pages} by x={x}, y={y} px")
    return offset_command


def _calibration() -> click.Command:
    @click.command("calibration", cls=Command)
    @paper_option
    @output_option
    def calibration_command(paper_size, output):
        """Write the two-page offset calibration sheet."""
        from app.cards.calibration import calibration_sheet
        path = _card_errors(lambda: calibration_sheet(paper_size=paper_size, output=output))
        click.echo(f"Wrote {path}")
    return calibration_command


def _cutfile() -> click.Command:
    @click.command("cutfile", cls=Command)
    @paper_option
    @card_option
    @click.option("--format", "fmt", required=True, type=click.Choice(CUT_FORMATS), help="svg or dxf.")
    @click.option("--corner-radius", default=0.0, show_default=True, type=float, help="Rounded corners, mm.")
    @output_option
    def cutfile_command(paper_size, card_size, fmt, corner_radius, output):
        """Write the cut lines of a layout (one path per card, marks on their own layer)."""
        from app.cards.cutfile import write_cutfile
        path = _card_errors(lambda: write_cutfile(paper_size=paper_size, card_size=card_size, fmt=fmt,
                                                  output=output, corner_radius_mm=corner_radius))
        click.echo(f"Wrote {path}")
    return cutfile_command


def _layouts() -> click.Command:
    @click.command("layouts", cls=Command)
    def layouts_command():
        """List the supported paper x card size combinations."""
        from app.cards.layouts import supported_layouts
        header = ("paper", "card", "grid", "per sheet", "card mm", "template")
        rows = [
            (r["paper_size"], r["card_size"], f"{r['cols']} x {r['rows']}", str(r["cards_per_sheet"]),
             "{:.2f} x {:.2f}".format(*r["card_mm"]), r["template"])
            for r in supported_layouts()
        ]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return layouts_command

def make_commands(max_pixels: Callable[[], int] = lambda: DEFAULT_MAX_PIXELS) -> list[click.Command]:
    """Fresh command objects (the Flask group wraps its own copies in the app context);
    `max_pixels` gives the per-image pixel cap when `generate` runs."""
    return [_generate(max_pixels), _offset(), _calibration(), _cutfile(), _layouts()]


HELP = "Make Silhouette card sheets, offset back pages, print calibration sheets and cut files."
cli = Group("scm-cards", help=HELP, commands=make_commands())


def main() -> None:
    cli(prog_name="scm-cards")


if __name__ == "__main__":
    main()
