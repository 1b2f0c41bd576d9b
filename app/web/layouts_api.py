"""GET /api/layouts: the card engine's sheet table, enough for the page to draw a true
preview (slot rectangles, registration marks, which slot is behind which) and to offer
only the paper/card pairs that exist. Public: it is the same table the README prints."""
from __future__ import annotations

from functools import cache

from flask import Blueprint, jsonify

from app.cards import layouts

bp = Blueprint("layouts_api", __name__, url_prefix="/api")


def _paper_view(paper: layouts.Paper) -> dict:
    return {"page_px": [paper.width_px, paper.height_px],
            "marks_px": [list(rect) for rect in paper.marks]}


def _layout_view(layout: layouts.Layout) -> dict:
    slots = []
    for index in range(layout.slots):
        x, y = layout.slot_origin(index)
        slots.append([x, y, layout.card_w, layout.card_h])
    return {
        "paper_size": layout.paper.name,
        "card_size": layout.card_size,
        "cols": layout.cols,
        "rows": layout.rows,
        "cards_per_sheet": layout.slots,
        "card_px": [layout.card_w, layout.card_h],
        "bleed_px": list(layout.bleed),
        "template": layout.template,
        "slots_px": slots,
        # back page slot holding the back of front slot i (the sheet turns top-to-bottom)
        "back_slot": [layout.mirror(index) for index in range(layout.slots)],
    }


@cache
def layouts_document() -> dict:
    return {
        "units": "px at 300 ppi, origin top-left, y down",
        "papers": {name: _paper_view(paper) for name, paper in layouts.PAPERS.items()},
        "card_sizes": {name: list(size) for name, size in layouts.CARD_SIZES.items()},
        "layouts": [_layout_view(layout) for layout in layouts.LAYOUTS.values()],
    }


@bp.get("/layouts")
def list_layouts():
    response = jsonify(layouts_document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
