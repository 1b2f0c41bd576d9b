"""The generator's option checks and limits (spec §5.5, §7).

Every limit is written here or in `app.cards.layouts` once. The typed option sets built
on these checks (`app.cards.models`) are what the CLI, the jobs API, the stored job params
and the engine functions validate with; this module stays free of pydantic so that
`import app.cards` stays cheap.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from natsort import natsort_keygen

from app.cards.errors import CardError
from app.cards.layouts import CARD_SIZES

# Defaults, as the original's; the option models and the command lines take them from here
# (a command line can show them without loading pydantic).
DEFAULT_PAPER_SIZE = "letter"
DEFAULT_CARD_SIZE = "standard"
DEFAULT_PPI = 300
DEFAULT_QUALITY = 100

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
