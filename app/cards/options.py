"""Parsing and validation of the generator's options (spec §5.5, §7)."""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from natsort import natsort_keygen

from app.cards.errors import CardError
from app.cards.layouts import CARD_SIZES

PPI_RANGE = (72, 1200)
NAME_MAX_CHARS = 100

# natsort's default key is what the original sorts with: digit runs compare as
# numbers, everything else as case-sensitive text.
natural_key = natsort_keygen()


def natural_sorted(items: Iterable[str]) -> list[str]:
    """`a1, a2, a10` order (natsort default), as the original orders card files."""
    return sorted(items, key=natural_key)


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
        return int(value)
    raise CardError(f"{option} must be a whole number, not {value!r}")


def as_bool(value, option: str) -> bool:
    """True/False, or their usual spellings in form fields ("true", "0", "yes", ...)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise CardError(f"{option} must be true or false, not {value!r}")


def check_ppi(value) -> int:
    ppi = as_int(value, "ppi")
    low, high = PPI_RANGE
    if not low <= ppi <= high:
        raise CardError(f"ppi must be between {low} and {high}, not {ppi}")
    return ppi


def check_quality(value) -> int:
    quality = as_int(value, "quality")
    if not 0 <= quality <= 100:
        raise CardError(f"quality must be between 0 and 100 (100 = lossless), not {quality}")
    return quality


def check_extend_corners(value, card_w: int, card_h: int) -> int:
    extend = as_int(value, "extend_corners")
    limit = (min(card_w, card_h) - 1) // 2
    if not 0 <= extend <= limit:
        raise CardError(f"extend_corners must be between 0 and {limit} px, not {extend}")
    return extend


def check_skip(values, slots: int) -> tuple[frozenset[int], list[str]]:
    """De-duplicated valid skip indices, and warnings for the ignored ones."""
    if values is None:
        values = ()
    if isinstance(values, (int, str)):
        values = (values,)
    skip: set[int] = set()
    ignored: set[int] = set()
    for value in values:
        index = as_int(value, "skip")
        if index < 0:
            raise CardError(f"skip indices start at 0; got {index}")
        (skip if index < slots else ignored).add(index)
    warnings = []
    if ignored:
        listed = ", ".join(map(str, sorted(ignored)))
        warnings.append(f"skip {listed} ignored: this layout has slots 0 to {slots - 1}")
    if len(skip) >= slots:
        raise CardError(f"skip leaves no slot free: this layout has {slots} slots")
    return frozenset(skip), warnings


def clean_name(name) -> tuple[str | None, list[str]]:
    """Label name safe for a Helvetica (WinAnsi) label, and a warning if characters were lost."""
    if name is None:
        return None, []
    if not isinstance(name, str):
        raise CardError(f"name must be text, not {name!r}")
    # Control and format characters become spaces, then runs of spaces collapse.
    text = " ".join(
        "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in name).split()
    )
    if not text:
        return None, []
    if len(text) > NAME_MAX_CHARS:
        raise CardError(f"name is {len(text)} characters long; at most {NAME_MAX_CHARS} fit the label")
    printable = text.encode("cp1252", "replace").decode("cp1252")
    warnings = []
    if printable != text:
        warnings.append(
            "name: characters outside Western European text are shown as '?' in the label"
        )
    return printable, warnings
