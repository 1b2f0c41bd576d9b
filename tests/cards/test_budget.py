"""Issue 12, point 1: a job's memory budget from image headers (app.cards.budget)."""
from __future__ import annotations

import pytest
from PIL import Image

from app.cards import generate_sheets
from app.cards.budget import MB, MemoryBudget, check_fits, image_cost, parallel_within
from app.cards.errors import CardError


def _png(path, size, mode, colour):
    Image.new(mode, size, colour).save(path)
    return path


def test_the_cost_comes_from_the_header_and_the_mode(tmp_path):
    rgba = image_cost(_png(tmp_path / "a.png", (2000, 1000), "RGBA", (1, 2, 3, 4)), "a.png")
    rgb = image_cost(_png(tmp_path / "b.png", (2000, 1000), "RGB", (1, 2, 3)), "b.png")
    grey = image_cost(_png(tmp_path / "c.png", (2000, 1000), "L", 7), "c.png")
    assert rgba.peak_bytes > 2_000_000 * 22 > rgb.peak_bytes > 2_000_000 * 9 > grey.peak_bytes
    assert (rgba.width, rgba.height, rgba.mode) == (2000, 1000, "RGBA")


def test_refusal_names_the_file_and_the_figures(tmp_path):
    cost = image_cost(_png(tmp_path / "big.png", (2000, 1000), "RGBA", (1, 2, 3, 4)), "big.png")
    with pytest.raises(CardError) as caught:
        check_fits(cost, MemoryBudget(16 * MB, "SOME_SETTING=1"))
    message = str(caught.value)
    assert message.startswith("big.png needs about 46 MB") and "2000 x 1000 px, RGBA" in message
    assert "a job may use 16 MB (SOME_SETTING=1)" in message


def test_parallel_loads_shrink_to_what_the_budget_holds(tmp_path):
    costs = [image_cost(_png(tmp_path / f"{n}.png", (1000, 1000), "RGB", (n, 0, 0)), str(n))
             for n in range(4)]
    each = max(cost.peak_bytes for cost in costs)
    assert parallel_within(costs, MemoryBudget(10 * each, "x"), 4) == 4
    assert parallel_within(costs, MemoryBudget(2 * each + 1, "x"), 4) == 2
    assert parallel_within(costs, MemoryBudget(each, "x"), 4) == 1
    with pytest.raises(CardError):
        parallel_within(costs, MemoryBudget(each - 1, "x"), 4)


def test_the_engine_refuses_before_decoding(tmp_path):
    fronts = tmp_path / "fronts"
    fronts.mkdir()
    _png(fronts / "card.png", (1500, 2100), "RGBA", (9, 9, 9, 9))
    with pytest.raises(CardError, match=r"card.png needs about \d+ MB"):
        generate_sheets(front_dir=fronts, output=tmp_path / "out.pdf",
                        memory_budget=MemoryBudget(16 * MB, "test"))
    assert not (tmp_path / "out.pdf").exists()
    generate_sheets(front_dir=fronts, output=tmp_path / "out.pdf",
                    memory_budget=MemoryBudget(512 * MB, "test"))
    assert (tmp_path / "out.pdf").stat().st_size > 0
