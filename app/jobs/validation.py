"""Up-front validation of job submissions: every bad input becomes a 400 before anything
is stored or queued.

Options are the card engine's own models (`app.cards.options`): this module only reads
their fields from a form and turns an `OptionError` into a 400 naming the field, so the
API, `flask cards ...` and the worker accept exactly the same values. On top of those, it
bounds what a request can make us parse (field lengths, list sizes) so that hostile input
costs nothing.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Any, TypeVar

from werkzeug.utils import secure_filename

from app.cards.models import CalibrationOptions, OffsetOptions, OptionError, Options, SheetOptions
from app.cards.options import SKIP_MAX_VALUES
from app.errors import APIError

MAX_FIELD_CHARS = 1000       # any single text field
MAX_NUMBER_CHARS = 12        # "-12345678901": anything longer is not a sane number
MAX_PATH_DEPTH = 8
MAX_NAME_CHARS = 255

M = TypeVar("M", bound=Options)


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


def integer(value: Any, name: str, low: int, high: int) -> int:
    """A query parameter such as `limit` (no option model covers those)."""
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


# --- option sets ------------------------------------------------------------------------
def validated(model: type[M], values: Any) -> M:
    """The model built from `values`, or a 400 whose message names the bad field."""
    try:
        return model.parse(values)
    except OptionError as exc:
        raise bad(str(exc)) from None


def form_options(model: type[M], form, *, lists: tuple[str, ...] = ()) -> M:
    """The model's fields read from a form; absent fields keep the model's defaults.

    Fields in `lists` may repeat and hold comma lists (`skip=1,2&skip=5`)."""
    values: dict[str, Any] = {}
    for name in model.model_fields:
        value = _list_field(form, name) if name in lists else text_field(form, name)
        if value is not None:
            values[name] = value
    return validated(model, values)


def _list_field(form, name: str) -> list[str] | None:
    raw = form.getlist(name) if hasattr(form, "getlist") else [form.get(name)]
    raw = [entry for entry in raw if entry is not None]
    if not raw:
        return None
    values: list[str] = []
    for entry in raw:
        if not isinstance(entry, str) or len(entry) > 8 * SKIP_MAX_VALUES:
            raise bad(f"{name} is too long: at most {SKIP_MAX_VALUES} values")
        values.extend(part.strip() for part in entry.split(",") if part.strip())
        if len(values) > SKIP_MAX_VALUES:
            raise bad(f"{name} lists too many values: at most {SKIP_MAX_VALUES}")
    return values


def sheet_params(form) -> SheetOptions:
    return form_options(SheetOptions, form, lists=("skip",))


def offset_params(form) -> OffsetOptions:
    return form_options(OffsetOptions, form)


def calibration_params(data: Any) -> CalibrationOptions:
    if not isinstance(data, dict):
        raise bad('the body must be a JSON object such as {"paper_size": "letter"}')
    return validated(CalibrationOptions, data)


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
