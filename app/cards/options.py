"""The generator's options (spec §5.5, §7): the checks, and the typed option sets built on them.

Every limit is written here or in `app.cards.layouts` once. `SheetOptions`,
`OffsetOptions` and `CalibrationOptions` are what the CLI, the jobs API, the stored job
params and the engine functions all validate with, and what the OpenAPI document is
generated from, so none of them can accept a value another refuses.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from natsort import natsort_keygen
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      ValidationInfo, field_validator)
from pydantic_core import PydanticCustomError

from app.cards.errors import CardError
from app.cards.layouts import CARD_SIZES, PAPERS, Layout, get_layout

PPI_RANGE = (72, 1200)
QUALITY_RANGE = (0, 100)          # 100 = lossless; below it, JPEG at that quality
MAX_OFFSET_PX = 600               # 2 in: anything larger is a typo, not a printer
NAME_MAX_CHARS = 100
CROP_MAX_CHARS = 32
SKIP_MAX_VALUES = 256             # distinct slot numbers (the biggest sheet has 40 slots)
NUMBER_MAX_DIGITS = 12            # "-12345678901": anything longer is not a sane number

# natsort's default key is what the original sorts with: digit runs compare as
# numbers, everything else as case-sensitive text.
natural_key = natsort_keygen()


def natural_sorted(items: Iterable[str]) -> list[str]:
    """`a1, a2, a10` order (natsort default), as the original orders card files."""
    return sorted(items, key=natural_key)


# --------------------------------------------------------------------------- the checks

@dataclass(frozen=True)
class Crop:
    """Total percentage of the image removed per axis, split evenly between both sides."""

    percent_x: float
    percent_y: float

    def border_px(self, width: int, height: int) -> tuple[int, int]:
        """Pixels removed from each side of a width x height image (spec §7 `crop`)."""
        return (
            math.floor(width / 2 * self.percent_x / 100),
            math.floor(height / 2 * self.percent_y / 100),
        )


_CROP_RE = re.compile(r"(\d+\.?\d*|\.\d+)(mm|in)?")


def parse_crop(text: str | None, card_size: str = "standard") -> Crop | None:
    """Parse `6.5` (percent), `3mm` or `0.125in`; None or blank means no crop.

    Lengths are relative to the layout's nominal card size, as in the original.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise CardError(f"crop must be text such as '3mm', '0.125in' or '6.5', not {text!r}")
    value = text.strip().lower()
    if not value:
        return None
    match = _CROP_RE.fullmatch(value)
    if not match:
        raise CardError(
            f"invalid crop {text!r}: use a percentage (6.5), millimetres (3mm) or inches (0.125in)"
        )
    if card_size not in CARD_SIZES:
        raise CardError(f"unknown card size {card_size!r}; supported: {', '.join(CARD_SIZES)}")
    number = float(match.group(1))
    unit = match.group(2)
    if unit is None:
        crop = Crop(number, number)
    else:
        inches = number / 25.4 if unit == "mm" else number
        card_w, card_h = CARD_SIZES[card_size]
        crop = Crop(200 * inches / (card_w / 300), 200 * inches / (card_h / 300))
    if crop.percent_x >= 100 or crop.percent_y >= 100:
        raise CardError(f"crop {text!r} removes the whole image; it must stay below 100 %")
    return crop


def as_int(value, option: str) -> int:
    """Accept ints and digit strings (form fields arrive as text); refuse bools and floats."""
    if isinstance(value, bool):
        raise CardError(f"{option} must be a whole number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        if len(value.strip().lstrip("+-")) > NUMBER_MAX_DIGITS:
            raise CardError(f"{option} is not a sane number ({len(value.strip())} characters)")
        return int(value)
    raise CardError(f"{option} must be a whole number, not {str(value)[:40]!r}")


def as_bool(value, option: str) -> bool:
    """True/False, or their usual spellings in form fields ("true", "0", "yes", ...)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise CardError(f"{option} must be true or false, not {str(value)[:40]!r}")


def check_range(value, option: str, low: int, high: int, unit: str = "") -> int:
    number = as_int(value, option)
    if not low <= number <= high:
        raise CardError(f"{option} must be between {low} and {high}{unit}, not {number}")
    return number


def extend_corners_limit(card_w: int, card_h: int) -> int:
    """Most px extend_corners may replace: it must leave the card's centre line alone."""
    return (min(card_w, card_h) - 1) // 2


def check_extend_corners(value, card_w: int, card_h: int) -> int:
    return check_range(value, "extend_corners", 0, extend_corners_limit(card_w, card_h), " px")


def check_skip(values, slots: int) -> tuple[frozenset[int], list[str]]:
    """De-duplicated valid skip indices, and warnings for the ignored ones."""
    skip: set[int] = set()
    ignored: set[int] = set()
    for index in skip_indices(values):
        (skip if index < slots else ignored).add(index)
    warnings = []
    if ignored:
        listed = ", ".join(map(str, sorted(ignored)))
        warnings.append(f"skip {listed} ignored: this layout has slots 0 to {slots - 1}")
    if len(skip) >= slots:
        raise CardError(f"skip leaves no slot free: this layout has {slots} slots")
    return frozenset(skip), warnings


def skip_indices(values) -> tuple[int, ...]:
    """Slot numbers, sorted and de-duplicated; one number, a list, or None for none."""
    if values is None:
        values = ()
    if isinstance(values, (int, str)):
        values = (values,)
    indices = set()
    for value in values:
        index = as_int(value, "skip")
        if index < 0:
            raise CardError(f"skip indices start at 0; got {index}")
        indices.add(index)
    if len(indices) > SKIP_MAX_VALUES:
        raise CardError(f"skip lists {len(indices)} slots; at most {SKIP_MAX_VALUES}")
    return tuple(sorted(indices))


def collapse_name(name) -> str | None:
    """The name with control characters and runs of spaces made single spaces; None if blank."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise CardError(f"name must be text, not {str(name)[:40]!r}")
    text = " ".join(
        "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in name).split()
    )
    if len(text) > NAME_MAX_CHARS:
        raise CardError(f"name is {len(text)} characters long; at most {NAME_MAX_CHARS} fit the label")
    return text or None


def clean_name(name) -> tuple[str | None, list[str]]:
    """Label name safe for a Helvetica (WinAnsi) label, and a warning if characters were lost."""
    text = collapse_name(name)
    if text is None:
        return None, []
    printable = text.encode("cp1252", "replace").decode("cp1252")
    warnings = []
    if printable != text:
        warnings.append(
            "name: characters outside Western European text are shown as '?' in the label"
        )
    return printable, warnings


# --------------------------------------------------------------------------- option sets

class OptionError(CardError):
    """A bad option value; `field` names the option (None when the whole input is wrong)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field

    @classmethod
    def first_of(cls, exc: ValidationError) -> "OptionError":
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        if error["type"] == "card_option":          # the engine's message names the field
            return cls(error["msg"], field)
        if error["type"] == "extra_forbidden":
            return cls(f"unknown option {field!r}", field)
        return cls(f"{field}: {error['msg']}" if field else error["msg"], field)


def _engine(check, *args):
    """Run an engine check inside pydantic: its CardError becomes a validation error."""
    try:
        return check(*args)
    except CardError as exc:
        raise PydanticCustomError("card_option", str(exc)) from None


def _before(check, *args):
    """A BeforeValidator running the engine's `check(value, *args)`."""
    return BeforeValidator(lambda value: _engine(check, value, *args))


def _ranged(low: int, high: int, check=check_range):
    # The constraints come first so that the JSON schema shows them as minimum/maximum;
    # the engine's check runs before them and gives the error message.
    return Annotated[int, Field(ge=low, le=high),
                     BeforeValidator(lambda v, info: _engine(check, v, info.field_name, low, high))]


def _size_name(value: Any, names: Mapping, kind: str) -> str:
    """A paper or card size, case and spaces forgiven (form fields, shell habits)."""
    if not isinstance(value, str):
        raise CardError(f"{kind} size must be text, not {str(value)[:40]!r}")
    name = value.strip().lower()
    if name not in names:
        raise CardError(f"unknown {kind} size {value[:40]!r}; supported: {', '.join(names)}")
    return name


def _names(names: Mapping, kind: str):
    return Annotated[str, _before(_size_name, names, kind),
                     Field(json_schema_extra={"enum": list(names)})]


def _offset_px(value, axis: str, low: int, high: int) -> int:
    number = as_int(value, axis)
    if not low <= number <= high:
        raise CardError(f"{axis} offset {number} px is out of range ({low} to {high})")
    return number


def _crop_text(value) -> str | None:
    if parse_crop(value) is None:     # its type and form; the card size is checked later
        return None
    return value.strip()


PaperSize = _names(PAPERS, "paper")
CardSize = _names(CARD_SIZES, "card")
OffsetPx = _ranged(-MAX_OFFSET_PX, MAX_OFFSET_PX, check=_offset_px)
Ppi = _ranged(*PPI_RANGE)
Quality = _ranged(*QUALITY_RANGE)
# The per-card limit is checked against the chosen card; this is the largest of them.
ExtendCorners = _ranged(0, max(extend_corners_limit(*size) for size in CARD_SIZES.values()))


class Options(BaseModel):
    """An engine option set: frozen, no unknown fields, defaults as the original's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, data: Any = None, /, **values):
        """Validated options from a mapping and/or keywords; OptionError names what is wrong."""
        if isinstance(data, cls) and not values:
            return data
        if isinstance(data, BaseModel):
            data = data.model_dump()
        if values or data is None:
            data = {**(data or {}), **values}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise OptionError.first_of(exc) from None


class SheetOptions(Options):
    """How `generate_sheets` lays cards out (spec §5.5, §7)."""

    paper_size: PaperSize = "letter"
    card_size: CardSize = "standard"
    only_fronts: Annotated[bool, _before(as_bool, "only_fronts")] = Field(
        False, description="front pages only, no back pages")
    crop: Annotated[str | None, _before(_crop_text)] = Field(
        None, max_length=CROP_MAX_CHARS,
        description="border to remove: percent (6.5), millimetres (3mm) or inches (0.125in)")
    extend_corners: ExtendCorners = Field(
        0, description="px (300 ppi) to replace at the card edges; at most "
                       "(shorter card side - 1) / 2")
    ppi: Ppi = Field(300, description="image resolution target")
    quality: Quality = Field(100, description="100 = lossless; lower = JPEG")
    skip: Annotated[tuple[Annotated[int, Field(ge=0)], ...],
                    _before(skip_indices)] = Field(
        (), max_length=SKIP_MAX_VALUES, description="card slots to leave empty (0 = top left)")
    name: Annotated[str | None, _before(collapse_name)] = Field(
        None, max_length=NAME_MAX_CHARS, description="name printed in the sheet label")

    # Checks that depend on the layout: `info.data` holds the fields validated so far
    # (declaration order); a field that failed is missing and has its own error already.
    @field_validator("card_size")
    @classmethod
    def _on_this_paper(cls, card: str, info: ValidationInfo) -> str:
        if "paper_size" in info.data:
            _engine(get_layout, info.data["paper_size"], card)
        return card

    @field_validator("crop")
    @classmethod
    def _crop_fits(cls, crop: str | None, info: ValidationInfo) -> str | None:
        if "card_size" in info.data:
            _engine(parse_crop, crop, info.data["card_size"])
        return crop

    @field_validator("extend_corners")
    @classmethod
    def _extend_fits(cls, extend: int, info: ValidationInfo) -> int:
        layout = _layout_of(info)
        return extend if layout is None else \
            _engine(check_extend_corners, extend, layout.card_w, layout.card_h)

    @field_validator("skip")
    @classmethod
    def _slot_left(cls, skip: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        layout = _layout_of(info)
        if layout is not None:
            _engine(check_skip, skip, layout.slots)
        return skip

    @property
    def layout(self) -> Layout:
        return get_layout(self.paper_size, self.card_size)

    @property
    def crop_spec(self) -> Crop | None:
        return parse_crop(self.crop, self.card_size)

    def skip_slots(self) -> tuple[frozenset[int], list[str]]:
        """The slots of this layout left empty, and warnings for numbers beyond it."""
        return check_skip(self.skip, self.layout.slots)

    def label_name(self) -> tuple[str | None, list[str]]:
        return clean_name(self.name)


def _layout_of(info: ValidationInfo) -> Layout | None:
    if "paper_size" in info.data and "card_size" in info.data:
        return get_layout(info.data["paper_size"], info.data["card_size"])
    return None


class OffsetOptions(Options):
    """How far `offset_pdf` moves back pages, in px at 300 ppi (spec §8)."""

    x: OffsetPx = Field(0, description="px (300 ppi) to move back pages right; left is -")
    y: OffsetPx = Field(0, description="px (300 ppi) to move back pages down; up is -")


class CalibrationOptions(Options):
    """Which paper `calibration_sheet` draws on (spec §9)."""

    paper_size: PaperSize = "letter"

