"""Up-front validation of job submissions: every bad input becomes a 400 before anything
is stored or queued.

Option rules come from the card engine (`app.cards.options`, `app.cards.layouts`), so
the API and `flask cards ...` accept exactly the same values. On top of those, this
module bounds what a request can make us parse (field lengths, list sizes, digit
counts) so that hostile input costs nothing.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from werkzeug.utils import secure_filename

from app.cards import layouts, options
from app.cards.errors import CardError
from app.cards.offset import MAX_OFFSET_PX
from app.errors import APIError

MAX_FIELD_CHARS = 1000       # any single text field
MAX_NUMBER_CHARS = 12        # "-12345678901": anything longer is not a sane number
MAX_SKIP_VALUES = 256        # raw entries before de-duplication (the biggest sheet has 40)
MAX_PATH_DEPTH = 8
MAX_NAME_CHARS = 255
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def bad(message: str, code: str = "invalid_input") -> APIError:
    return APIError(400, code, message)


def text_field(form, name: str, *, default: str | None = None) -> str | None:
    values = form.getlist(name) if hasattr(form, "getlist") else [form.get(name)]
    values = [v for v in values if v is not None]
    if not values:
        return default
    if len(values) > 1:
        raise bad(f"{name} was given {len(values)} times; give it once")
    value = values[0]
    if not isinstance(value, str):
        raise bad(f"{name} must be text")
    if len(value) > MAX_FIELD_CHARS:
        raise bad(f"{name} is too long (at most {MAX_FIELD_CHARS} characters)")
    return value


def boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise bad(f"{name} must be true or false, not {str(value)[:40]!r}")


def integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or value is None:
        raise bad(f"{name} must be a whole number between {low} and {high}")
    if isinstance(value, str):
        value = value.strip()
        if len(value) > MAX_NUMBER_CHARS or not re.fullmatch(r"[+-]?\d+", value):
            raise bad(f"{name} must be a whole number between {low} and {high}, "
                      f"not {value[:40]!r}")
        value = int(value)
    if not isinstance(value, int):
        raise bad(f"{name} must be a whole number between {low} and {high}")
    if not low <= value <= high:
        raise bad(f"{name} must be between {low} and {high}, not {value}")
    return value


def _engine(check, *args):
    """Run one of the card engine's option checks; its CardError becomes a 400."""
    try:
        return check(*args)
    except CardError as exc:
        raise bad(str(exc)) from None


# --- option sets ------------------------------------------------------------------------
def sheet_params(form) -> dict:
    paper = text_field(form, "paper_size", default="letter").strip().lower()
    card = text_field(form, "card_size", default="standard").strip().lower()
    layout = _engine(layouts.get_layout, paper, card)

    crop = text_field(form, "crop")
    crop = crop.strip() if crop and crop.strip() else None
    _engine(options.parse_crop, crop, card)

    extend = text_field(form, "extend_corners", default="0")
    extend = _engine(options.check_extend_corners, _digits(extend, "extend_corners"),
                     layout.card_w, layout.card_h)
    ppi = _engine(options.check_ppi, _digits(text_field(form, "ppi", default="300"), "ppi"))
    quality = _engine(options.check_quality,
                      _digits(text_field(form, "quality", default="100"), "quality"))

    skip_values = _skip_values(form)
    skip, _ignored = _engine(options.check_skip, skip_values, layout.slots)

    name = text_field(form, "name")
    name, _warnings = _engine(options.clean_name, name)

    return {
        "paper_size": paper,
        "card_size": card,
        "only_fronts": boolean(text_field(form, "only_fronts", default="false"), "only_fronts"),
        "crop": crop,
        "extend_corners": extend,
        "ppi": ppi,
        "quality": quality,
        "skip": sorted(skip),
        "name": name,
    }


def _digits(value: str, name: str) -> str:
    value = value.strip()
    if len(value) > MAX_NUMBER_CHARS:
        raise bad(f"{name} is not a sane number ({len(value)} characters)")
    return value


def _skip_values(form) -> list[str]:
    raw = form.getlist("skip") if hasattr(form, "getlist") else [form.get("skip") or ""]
    values: list[str] = []
    for entry in raw:
        if not isinstance(entry, str) or len(entry) > 8 * MAX_SKIP_VALUES:
            raise bad(f"skip is too long: at most {MAX_SKIP_VALUES} slot numbers")
        values.extend(part.strip() for part in entry.split(",") if part.strip())
        if len(values) > MAX_SKIP_VALUES:
            raise bad(f"skip lists too many slots: at most {MAX_SKIP_VALUES} values")
    for value in values:
        _digits(value, "skip")
    return values


def offset_params(form) -> dict:
    return {
        "x": integer(text_field(form, "x", default="0"), "x", -MAX_OFFSET_PX, MAX_OFFSET_PX),
        "y": integer(text_field(form, "y", default="0"), "y", -MAX_OFFSET_PX, MAX_OFFSET_PX),
    }


def calibration_params(data: Any) -> dict:
    if not isinstance(data, dict):
        raise bad('the body must be a JSON object such as {"paper_size": "letter"}')
    unknown = sorted(set(data) - {"paper_size"})
    if unknown:
        raise bad(f"unknown field(s): {', '.join(map(str, unknown))[:200]}")
    paper = data.get("paper_size", "letter")
    if not isinstance(paper, str):
        raise bad("paper_size must be text")
    paper = paper.strip().lower()
    _engine(layouts.get_paper, paper)
    return {"paper_size": paper}


# --- file names ----------------------------------------------------------------------------
def _safe_part(part: str) -> str:
    """secure_filename, except that a name with non-ASCII letters (which it drops: two
    Cyrillic names would both become "png") keeps a short digest of the original, so
    distinct names stay distinct and a front and its double-sided back still match."""
    cleaned = secure_filename(part)
    if part.isascii() or part in ("", ".", ".."):
        return cleaned
    root, ext = os.path.splitext(part)
    root, ext = secure_filename(root), secure_filename(ext.lstrip("."))
    digest = hashlib.sha256(part.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{root}-{digest}" + (f".{ext}" if ext else "") if root else \
        digest + (f".{ext}" if ext else "")


def safe_relative_name(filename: str | None, field: str) -> str:
    """A browser/curl file name made safe, keeping its folder structure.

    Each path component goes through werkzeug's secure_filename, so `..`, absolute paths,
    hidden names and odd characters are gone, but `set1/a1.png` stays `set1/a1.png` -
    double-sided backs are matched to fronts by this relative name.
    """
    raw = (filename or "").replace("\\", "/")
    if len(raw) > 1024:
        raise bad(f"{field}: file name too long", "invalid_file")
    parts = [_safe_part(part) for part in raw.split("/")]
    parts = [part[-MAX_NAME_CHARS:] for part in parts if part]
    if not parts:
        raise bad(f"{field}: file {filename!r} has no usable name", "invalid_file")
    if len(parts) > MAX_PATH_DEPTH:
        raise bad(f"{field}: {filename!r} is nested too deeply", "invalid_file")
    return "/".join(parts)
