"""Fixtures of the card engine tests (helpers live in tests/cards/helpers.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.cards.helpers import solid_png


@pytest.fixture
def make_deck(tmp_path):
    """make_deck({"fronts": {"a.png": rgb, ...}, "backs": {...}}) -> the deck's root folder."""
    def make(spec: dict[str, dict[str, object]]) -> Path:
        root = tmp_path / "deck"
        for folder, files in spec.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            for name, content in files.items():
                target = root / folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, Image.Image):
                    content.save(target)
                elif isinstance(content, bytes):
                    target.write_bytes(content)
                else:
                    solid_png(target, content)
        return root
    return make
