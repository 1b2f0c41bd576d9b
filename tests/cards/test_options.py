"""Option parsing: crop, natural sort, skip, ppi, quality, name (spec §5.5, §7)."""
from __future__ import annotations

import pytest

from app.cards import CardError, natural_sorted, parse_crop
from app.cards.options import (
    check_extend_corners,
    check_ppi,
    check_quality,
    check_skip,
    clean_name,
)


@pytest.mark.parametrize("text, image, per_side", [
    ("6.5", (822, 1122), (26, 36)),        # spec §7 examples
    ("3mm", (822, 1122), (39, 38)),
    ("0.125in", (822, 1122), (41, 40)),
    (" 3MM ", (822, 1122), (39, 38)),
    (".5", (1000, 1000), (2, 2)),
    ("3.", (1000, 1000), (15, 15)),
])
def test_crop_forms(text, image, per_side):
    assert parse_crop(text, "standard").border_px(*image) == per_side


def test_crop_percentages_match_the_spec():
    crop = parse_crop("3mm", "standard")
    assert crop.percent_x == pytest.approx(9.5507, abs=1e-4)
    assert crop.percent_y == pytest.approx(6.8404, abs=1e-4)


@pytest.mark.parametrize("text", ["3 mm", "1cm", "-3", "3px", "abc", "3mmm", "100", "400mm"])
def test_bad_crop_is_a_card_error(text):
    with pytest.raises(CardError, match="crop"):
        parse_crop(text, "standard")


def test_no_crop():
    assert parse_crop(None, "standard") is None
    assert parse_crop("  ", "standard") is None


def test_natural_sort_matches_natsort_default():
    names = ["a10.png", "a2.png", "a1.png", "B1.png", "sub/a3.png", "a1b.png"]
    assert natural_sorted(names) == ["B1.png", "a1.png", "a1b.png", "a2.png", "a10.png", "sub/a3.png"]


def test_skip_is_deduplicated_and_checked():
    skip, warnings = check_skip([0, 5, 5, 9], 8)
    assert skip == {0, 5}
    assert warnings and "9" in warnings[0]
    with pytest.raises(CardError, match="no slot free"):
        check_skip(range(8), 8)
    with pytest.raises(CardError, match="start at 0"):
        check_skip([-1], 8)
    with pytest.raises(CardError, match="whole number"):
        check_skip(["x"], 8)


@pytest.mark.parametrize("value", [0, 71, 1201, "abc", 300.0, True, None])
def test_bad_ppi(value):
    with pytest.raises(CardError, match="ppi"):
        check_ppi(value)


def test_good_values():
    assert check_ppi("600") == 600
    assert check_quality(0) == 0 and check_quality(100) == 100
    assert check_extend_corners(10, 742, 1036) == 10


@pytest.mark.parametrize("check, value", [
    (check_quality, 101), (check_quality, -1), (lambda v: check_extend_corners(v, 742, 1036), -1),
    (lambda v: check_extend_corners(v, 742, 1036), 371),
])
def test_out_of_range(check, value):
    with pytest.raises(CardError):
        check(value)


def test_name_is_made_printable():
    assert clean_name("  My\tDeck\n ") == ("My Deck", [])
    assert clean_name("Pokémon")[0] == "Pokémon"
    text, warnings = clean_name("デッキ A")
    assert text == "??? A" and warnings
    with pytest.raises(CardError, match="at most"):
        clean_name("x" * 101)
