"""`flask cards ...`: the scm-cards commands inside the Flask CLI.

Same commands and options as `scm-cards` (app.cli.scm_cards); here the per-image pixel
cap comes from the application's settings.
"""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from app.cli.scm_cards import DEFAULT_MAX_PIXELS, HELP, OneLineErrors, make_commands


class _Group(OneLineErrors, AppGroup):
    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise click.ClickException(exc.format_message()) from None


def _max_pixels() -> int:
    try:
        return int(current_app.config["SETTINGS"].MAX_IMAGE_PIXELS)
    except (RuntimeError, KeyError, AttributeError, TypeError, ValueError):
        return DEFAULT_MAX_PIXELS


cards_cli = _Group("cards", help=HELP)
for _command in make_commands(_max_pixels):
    # Flask's own commands run inside the app context; added ones must ask for it.
    if _command.callback is not None:  # (a command made from a function has one)
        _command.callback = with_appcontext(_command.callback)
    cards_cli.add_command(_command)
