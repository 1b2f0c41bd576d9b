"""The card maker's page: one plain HTML page plus a small vanilla-JS file, no build step."""
from __future__ import annotations

from flask import Blueprint, Flask, render_template

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/assets")

# Shown when the card engine's tables cannot be imported (they name the same sizes).
FALLBACK_CARD_SIZES = ("standard", "japanese", "poker", "poker_half", "bridge", "bridge_square",
                       "domino", "domino_square")
FALLBACK_PAPER_SIZES = ("letter", "tabloid", "a4", "a3", "archb")


def _choices() -> tuple[list[str], list[str]]:
    try:
        from app.cards import layouts
        cards = list(getattr(layouts, "CARD_SIZES", FALLBACK_CARD_SIZES))
        papers = list(getattr(layouts, "PAPERS", FALLBACK_PAPER_SIZES))
        return cards, papers
    except ImportError:
        return list(FALLBACK_CARD_SIZES), list(FALLBACK_PAPER_SIZES)


@bp.get("/")
def index():
    card_sizes, paper_sizes = _choices()
    response = render_template("index.html", card_sizes=card_sizes, paper_sizes=paper_sizes)
    return response, 200, {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob:",
                           "X-Content-Type-Options": "nosniff"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
