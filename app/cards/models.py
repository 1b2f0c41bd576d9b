"""The typed option sets: `SheetOptions`, `OffsetOptions`, `CalibrationOptions`.

Built on the card engine's own checks (`app.cards.options`, `app.cards.layouts`): every
field runs the engine's check, so the facts stay written once, and the JSON schema pydantic
derives from the fields (limits, choices) is what `/api/openapi.json` publishes. The CLI,
the jobs API, the stored job params and the engine functions all validate with these, so
none of them can accept a value another refuses.

Kept apart from `app.cards.options` because pydantic costs about as much to import as the
rest of the engine: `import app.cards` does not load it; the engine functions import this
module when they are first called.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from app.cards.errors import CardError
from app.cards.layouts import CARD_SIZES, PAPERS, Layout, get_layout
from app.cards.options import (
    CROP_MAX_CHARS,
    DEFAULT_CARD_SIZE,
    DEFAULT_PAPER_SIZE,
    DEFAULT_PPI,
    DEFAULT_QUALITY,
    MAX_OFFSET_PX,
    NAME_MAX_CHARS,
    PPI_RANGE,
    QUALITY_RANGE,
    SKIP_MAX_VALUES,
    Crop,
    as_bool,
    as_int,
    check_extend_corners,
    check_range,
    check_skip,
    clean_name,
    collapse_name,
    extend_corners_limit,
    parse_crop,
    skip_indices,
)


class OptionError(CardError):
    """A bad option value; `field` names the option (None when the whole input is wrong)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field

    @classmethod
    def first_of(cls, exc: ValidationError) -> OptionError:
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


# The aliases below write their Annotated[...] out, with helpers for the metadata only:
# an Annotated a function returns is a value to type checkers, not a type.
def _limits(bounds: tuple[int, int]) -> Any:
    # The constraints come first so that the JSON schema shows them as minimum/maximum;
    # the engine's check (_range_check) runs before them and gives the error message.
    low, high = bounds
    return Field(ge=low, le=high)


def _range_check(bounds: tuple[int, int], check: Callable[..., int] = check_range) -> BeforeValidator:
    low, high = bounds
    return BeforeValidator(lambda v, info: _engine(check, v, info.field_name, low, high))


def _size_name(value: Any, names: Mapping, kind: str) -> str:
    """A paper or card size, case and spaces forgiven (form fields, shell habits)."""
    if not isinstance(value, str):
        raise CardError(f"{kind} size must be text, not {str(value)[:40]!r}")
    name = value.strip().lower()
    if name not in names:
        raise CardError(f"unknown {kind} size {value[:40]!r}; supported: {', '.join(names)}")
    return name


def _enum(names: Mapping) -> Any:
    return Field(json_schema_extra={"enum": list(names)})


def _offset_px(value, axis: str, low: int, high: int) -> int:
    number = as_int(value, axis)
    if not low <= number <= high:
        raise CardError(f"{axis} offset {number} px is out of range ({low} to {high})")
    return number


def _crop_text(value) -> str | None:
    if parse_crop(value) is None:     # its type and form; the card size is checked later
        return None
    return value.strip()


_OFFSET_RANGE = (-MAX_OFFSET_PX, MAX_OFFSET_PX)
# The per-card limit is checked against the chosen card; this is the largest of them.
_EXTEND_CORNERS_RANGE = (0, max(extend_corners_limit(*size) for size in CARD_SIZES.values()))

PaperSize = Annotated[str, _before(_size_name, PAPERS, "paper"), _enum(PAPERS)]
CardSize = Annotated[str, _before(_size_name, CARD_SIZES, "card"), _enum(CARD_SIZES)]
OffsetPx = Annotated[int, _limits(_OFFSET_RANGE), _range_check(_OFFSET_RANGE, _offset_px)]
Ppi = Annotated[int, _limits(PPI_RANGE), _range_check(PPI_RANGE)]
Quality = Annotated[int, _limits(QUALITY_RANGE), _range_check(QUALITY_RANGE)]
ExtendCorners = Annotated[int, _limits(_EXTEND_CORNERS_RANGE),
                          _range_check(_EXTEND_CORNERS_RANGE)]


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

    paper_size: PaperSize = DEFAULT_PAPER_SIZE
    card_size: CardSize = DEFAULT_CARD_SIZE
    only_fronts: Annotated[bool, _before(as_bool, "only_fronts")] = Field(
        False, description="front pages only, no back pages")
    crop: Annotated[str | None, _before(_crop_text)] = Field(
        None, max_length=CROP_MAX_CHARS,
        description="border to remove: percent (6.5), millimetres (3mm) or inches (0.125in)")
    extend_corners: ExtendCorners = Field(
        0, description="px (300 ppi) to replace at the card edges; at most "
                       "(shorter card side - 1) / 2")
    ppi: Ppi = Field(DEFAULT_PPI, description="image resolution target")
    quality: Quality = Field(DEFAULT_QUALITY, description="100 = lossless; lower = JPEG")
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

    paper_size: PaperSize = DEFAULT_PAPER_SIZE

