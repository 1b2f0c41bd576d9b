"""The card engine: card images in, printable Silhouette sheet PDFs out.

Pure library code: no Flask, Celery or Redis here (the `flask cards` commands live in
`app.cli.cards`). Geometry follows
shared/spec/card-format.md to the pixel.
"""
from app.cards.calibration import calibration_sheet
from app.cards.errors import CardError
from app.cards.layouts import get_layout, supported_layouts
from app.cards.offset import OffsetResult, offset_pdf
from app.cards.options import natural_key, natural_sorted, parse_crop
from app.cards.sheet import SheetResult, generate_sheets

__all__ = [
    "CardError",
    "OffsetResult",
    "SheetResult",
    "calibration_sheet",
    "generate_sheets",
    "get_layout",
    "natural_key",
    "natural_sorted",
    "offset_pdf",
    "parse_crop",
    "supported_layouts",
]
