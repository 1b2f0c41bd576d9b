"""Options: crop, natural sort, skip, ppi, quality, name (spec §5.5, §7), and the option
sets built on those checks."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.cards import CardError, natural_sorted, parse_crop
from app.cards.models import CalibrationOptions, OffsetOptions, OptionError, SheetOptions
from app.cards.options import check_extend_corners, check_skip, clean_name


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


@pytest.mark.parametrize("value", [0, 71, 1201, "abc", 300.0, True, None, "9" * 40])
def test_bad_ppi(value):
    with pytest.raises(OptionError, match="ppi") as info:
        SheetOptions.parse(ppi=value)
    assert info.value.field == "ppi"


def test_good_values():
    assert SheetOptions.parse(ppi="600").ppi == 600
    assert SheetOptions.parse(quality=0).quality == 0
    assert SheetOptions.parse(quality=100).quality == 100
    assert check_extend_corners(10, 742, 1036) == 10


@pytest.mark.parametrize("values, field", [
    ({"quality": 101}, "quality"), ({"quality": -1}, "quality"), ({"extend_corners": -1}, "extend_corners"),
    ({"extend_corners": 371}, "extend_corners"), ({"card_size": "poker", "extend_corners": 374}, "extend_corners"),
])
def test_out_of_range(values, field):
    with pytest.raises(OptionError) as info:
        SheetOptions.parse(values)
    assert info.value.field == field and field in str(info.value)


def test_name_is_made_printable():
    assert clean_name("  My\tDeck\n ") == ("My Deck", [])
    assert clean_name("Pokémon")[0] == "Pokémon"
    text, warnings = clean_name("デッキ A")
    assert text == "??? A" and warnings
    with pytest.raises(CardError, match="at most"):
        clean_name("x" * 101)


# --------------------------------------------------------------------------- option sets

def test_defaults_are_the_originals():
    assert SheetOptions().model_dump() == {
        "paper_size": "letter", "card_size": "standard", "only_fronts": False, "crop": None,
        "extend_corners": 0, "ppi": 300, "quality": 100, "skip": (), "name": None}
    assert OffsetOptions().model_dump() == {"x": 0, "y": 0}
    assert CalibrationOptions().paper_size == "letter"


def test_form_text_is_normalised():
    options = SheetOptions.parse(paper_size=" A4 ", card_size="Poker", only_fronts="yes",
                                 crop=" 3mm ", ppi="600", skip="2", name="  My\tDeck ")
    assert (options.paper_size, options.card_size, options.only_fronts) == ("a4", "poker", True)
    assert (options.crop, options.ppi, options.skip, options.name) == ("3mm", 600, (2,), "My Deck")
    assert SheetOptions.parse(skip=["5", 1, 5], crop="  ", name=" ").model_dump()["skip"] == (1, 5)
    assert SheetOptions.parse(crop="  ", name=" ").crop is None


@pytest.mark.parametrize("values, field, message", [
    ({"paper_size": "a3", "card_size": "poker"}, "card_size", "a3 supports: standard"),
    ({"card_size": "huge"}, "card_size", "supported: standard"),
    ({"paper_size": 5}, "paper_size", "must be text"),
    ({"crop": "3 cm"}, "crop", "invalid crop"),
    ({"card_size": "domino_square", "crop": "30mm"}, "crop", "removes the whole image"),
    ({"skip": list(range(8))}, "skip", "no slot free"),
    ({"only_fronts": "maybe"}, "only_fronts", "true or false"),
    ({"name": "n" * 101}, "name", "at most 100"),
    ({"colour": "red"}, "colour", "unknown option 'colour'"),
])
def test_errors_name_the_field(values, field, message):
    with pytest.raises(OptionError, match=message) as info:
        SheetOptions.parse(values)
    assert info.value.field == field and "\n" not in str(info.value)
    assert isinstance(info.value, CardError)


def test_offsets_are_bounded():
    assert OffsetOptions.parse(x="-600", y=600).model_dump() == {"x": -600, "y": 600}
    with pytest.raises(OptionError, match="x offset 601 px is out of range"):
        OffsetOptions.parse(x=601)
    with pytest.raises(OptionError, match="y must be a whole number"):
        OffsetOptions.parse(y=1.5)


def test_json_round_trip_gives_the_same_options():
    """Job params travel as the model's JSON and are validated again in the worker."""
    options = SheetOptions.parse(paper_size="tabloid", crop="6.5", skip=[3, 40], name="デッキ")
    again = SheetOptions.parse(options.model_dump(mode="json"))
    assert again == options
    # Derived values are computed again too, warnings included.
    assert again.skip_slots() == (frozenset({3}), ["skip 40 ignored: this layout has slots 0 to 15"])
    assert again.label_name()[1] and again.crop_spec == parse_crop("6.5", "standard")


def test_models_are_frozen_and_pydantic_native():
    options = SheetOptions()
    with pytest.raises(ValidationError):
        options.ppi = 600
    with pytest.raises(ValidationError):   # model_validate keeps pydantic's own error type
        SheetOptions.model_validate({"ppi": 5})
    assert SheetOptions.parse(options) is options
    assert SheetOptions.parse(options, ppi=600).ppi == 600


def test_importing_the_engine_does_not_load_pydantic():
    """pydantic costs about as much to import as the rest of the engine; the models load
    on the first engine call instead (see app.cards.models)."""
    import subprocess
    import sys
    code = "import sys, app.cards; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"
