"""Warnings for the user, one line per kind however many files it concerns (issue 7).

Files are named as the user named them (their path inside the folder they gave),
never by the folders a caller stored them in.
"""
from __future__ import annotations

ASPECT_TOLERANCE = 0.02
NAMES_SHOWN = 3


def aspect_warnings(uses, card_size: str, card_px: tuple[int, int]) -> list[str]:
    """uses: (name, upright size, crop or None) per distinct use of an image.

    One line for all images whose aspect ratio (after crop) differs from the card's
    by more than 2 %, with their count, the difference (or its range) and the first names.
    """
    slot_ratio = card_px[0] / card_px[1]
    off: dict[str, float] = {}
    for name, (width, height), crop in uses:
        if crop is not None:
            bx, by = crop.border_px(width, height)
            width, height = width - 2 * bx, height - 2 * by
        differs = abs((width / height) / slot_ratio - 1)
        if differs > ASPECT_TOLERANCE:
            off[name] = max(off.get(name, 0.0), differs)
    if not off:
        return []
    if len(off) == 1:
        (name, differs), = off.items()
        return [(f"{name} differs from the {card_size} card's aspect ratio by {_percent(differs)} "
                 "and is stretched to fit")]
    low, high = min(off.values()), max(off.values())
    amount = _percent(high) if _percent(low) == _percent(high) else \
        f"{_percent(low)[:-2]} to {_percent(high)}"
    return [(f"{len(off)} images differ from the {card_size} card's aspect ratio by {amount} "
             f"and are stretched to fit ({names_list(list(off))})")]


def names_list(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    rest = len(names) - NAMES_SHOWN
    return f"{shown} and {rest} more" if rest > 0 else shown


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.1f} %"
