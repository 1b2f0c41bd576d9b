"""Input folders and options passed to generate_sheets: clear CardErrors, never a traceback."""
from __future__ import annotations

import os

import pytest

from app.cards import CardError, generate_sheets
from app.cards.inputs import collect
from tests.cards.helpers import PALETTE


@pytest.fixture
def deck(make_deck):
    return make_deck({
        "fronts": {"a1.png": PALETTE[0], "a10.png": PALETTE[1], "sub/a2.png": PALETTE[2],
                   "notes.md": b"# notes", ".hidden.png": b"junk", "Thumbs.db": b"junk"},
        "backs": {"x.png": PALETTE[3], "y.png": PALETTE[4], "readme.md": b"hi"},
        "one_back": {"z.png": PALETTE[5]},
        "double": {"a10.png": PALETTE[6]},
        "orphans": {"a10.png": PALETTE[6], "zz.png": PALETTE[7]},
        "empty": {"notes.md": b"nothing here", ".DS_Store": b"junk"},
    })


def test_listing_rules(deck):
    files = collect(front_dir=deck / "fronts", back_dir=deck / "one_back", double_sided_dir=deck / "double")
    assert files.singles == ["a1.png", "sub/a2.png"]
    assert files.doubles == ["a10.png"]
    assert files.back.name == "z.png"


def test_several_backs_need_an_explicit_choice(deck, tmp_path):
    with pytest.raises(CardError) as info:
        generate_sheets(front_dir=deck / "fronts", back_dir=deck / "backs", output=tmp_path / "o.pdf")
    assert "x.png" in str(info.value) and "y.png" in str(info.value) and "back_file" in str(info.value)
    result = generate_sheets(front_dir=deck / "fronts", back_dir=deck / "backs", back_file="y.png",
                             output=tmp_path / "o.pdf")
    assert result.pages == 2
    with pytest.raises(CardError, match="choose one of: x.png, y.png"):
        generate_sheets(front_dir=deck / "fronts", back_dir=deck / "backs", back_file="w.png",
                        output=tmp_path / "o.pdf")
    with pytest.raises(CardError, match="not in back_dir"):
        generate_sheets(front_dir=deck / "fronts", back_dir=deck / "backs",
                        back_file=deck / "one_back" / "z.png", output=tmp_path / "o.pdf")


def test_back_file_alone(deck, tmp_path):
    result = generate_sheets(front_dir=deck / "fronts", back_file=deck / "one_back" / "z.png",
                             output=tmp_path / "o.pdf")
    assert result.images == 4


@pytest.mark.parametrize("options, message", [
    ({"double_sided_dir": "orphans"}, "zz.png"),
    ({"double_sided_dir": "double", "only_fronts": True}, "only_fronts"),
    ({"front_dir": "empty"}, "no card images"),
    ({"front_dir": "missing"}, "not a folder"),
    ({"back_dir": "missing"}, "back_dir"),
    ({"output": "missing/o.pdf"}, "does not exist"),
    ({"output": "fronts"}, "is a folder"),
    ({"paper_size": "a3", "card_size": "poker"}, "a3 supports: standard"),
    ({"card_size": "huge"}, "supported: standard"),
    ({"crop": "3 cm"}, "crop"),
    ({"ppi": 0}, "ppi"),
    ({"quality": 150}, "quality"),
    ({"extend_corners": -2}, "extend_corners"),
    ({"skip": [0, 1, 2, 3, 4, 5, 6, 7]}, "no slot free"),
    ({"skip": [-1]}, "skip"),
    ({"name": "n" * 200}, "name"),
    ({"max_image_pixels": 0}, "max_image_pixels"),
    ({"only_fronts": "maybe"}, "only_fronts"),
])
def test_bad_options(deck, tmp_path, options, message):
    args = {"front_dir": deck / "fronts", "output": tmp_path / "o.pdf"}
    for key, value in options.items():
        args[key] = deck / value if key.endswith("_dir") or key == "output" else value
    with pytest.raises(CardError, match=message) as info:
        generate_sheets(**args)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o.pdf").exists()


def test_special_files_are_ignored(deck, tmp_path):
    os.mkfifo(deck / "fronts" / "pipe.png")        # would block forever if opened
    (deck / "fronts" / "loop").symlink_to(deck / "fronts", target_is_directory=True)
    result = generate_sheets(front_dir=deck / "fronts", output=tmp_path / "o.pdf", only_fronts=True)
    assert result.cards == 3
