"""The card engine: card images in, printable Silhouette sheet PDFs out.

Pure library code: no Flask, Celery or Redis here (the commands live in
`app.cli.scm_cards`). Geometry follows shared/spec/card-format.md to the pixel.

Names load on first use (PEP 562): `import app.cards.layouts` for a command's option
list must not pay for Pillow, numpy and pypdf.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "CardError": "app.cards.errors",
    "OffsetResult": "app.cards.offset",
    "SheetResult": "app.cards.sheet",
    "calibration_sheet": "app.cards.calibration",
    "cutfile_bytes": "app.cards.cutfile",
    "generate_sheets": "app.cards.sheet",
    "get_layout": "app.cards.layouts",
    "natural_key": "app.cards.options",
    "natural_sorted": "app.cards.options",
    "offset_pdf": "app.cards.offset",
    "parse_crop": "app.cards.options",
    "supported_layouts": "app.cards.layouts",
    "write_cutfile": "app.cards.cutfile",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'app.cards' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
