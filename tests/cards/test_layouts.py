"""The geometry table against the spec's own numbers (card-format.md §2, §4)."""
from __future__ import annotations

import pytest

from app.cards import CardError, get_layout, supported_layouts
from app.cards.layouts import CARD_SIZES, LAYOUTS, PAPERS, PT_PER_PX, Layout
from tests.cards.helpers import SPEC, SPEC_LAYOUTS

# spec §2.2: bleed x, y per layout
SPEC_BLEED = {
    ("letter", "standard"): (9, 7), ("letter", "japanese"): (33, 18), ("letter", "poker"): (8, 7),
    ("letter", "poker_half"): (19, 17), ("letter", "bridge"): (16, 13),
    ("letter", "bridge_square"): (21, 22), ("letter", "domino"): (24, 21),
    ("letter", "domino_square"): (22, 20),
    ("tabloid", "standard"): (8, 7), ("tabloid", "poker"): (8, 7), ("tabloid", "bridge"): (16, 12),
    ("tabloid", "domino_square"): (20, 21),
    ("a4", "standard"): (9, 7), ("a4", "japanese"): (33, 18), ("a4", "poker"): (8, 7),
    ("a4", "poker_half"): (19, 10), ("a4", "bridge"): (16, 12),
    ("a3", "standard"): (9, 7), ("archb", "standard"): (35, 17),
}
# spec §2.3
UNSUPPORTED = {
    "tabloid": {"japanese", "poker_half", "bridge_square", "domino"},
    "a4": {"bridge_square", "domino", "domino_square"},
    "a3": set(CARD_SIZES) - {"standard"},
    "archb": set(CARD_SIZES) - {"standard"},
}


def test_nineteen_combinations_with_the_spec_bleed():
    assert set(LAYOUTS) == set(SPEC_BLEED)
    for key, bleed in SPEC_BLEED.items():
        assert LAYOUTS[key].bleed == bleed, key


def test_tables_are_the_spec_numbers():
    assert CARD_SIZES == {name: tuple(size) for name, size in SPEC["card_sizes_px"].items()}
    assert {(s.paper, s.card) for s in SPEC_LAYOUTS} == set(LAYOUTS)
    for spec in SPEC_LAYOUTS:
        layout = LAYOUTS[(spec.paper, spec.card)]
        assert [layout.slot_origin(s) for s in range(layout.slots)] == [spec.origin(s) for s in range(spec.slots)]
        assert (layout.card_w, layout.card_h) == spec.card_size
        assert layout.bleed == spec.bleed                     # derived (§4.1) = the spec's value
        assert layout.template == spec.template
        assert (layout.paper.width_px, layout.paper.height_px) == spec.page
        assert list(layout.paper.marks) == spec.marks


def test_label_anchors():
    for name, paper in PAPERS.items():
        anchor = SPEC["papers"][name]["label_anchor_px"]
        if name == "tabloid":
            # the spec's anchor is off the page; ours sits in the corner without a mark
            assert (paper.label_x_px, paper.label_align) == (180, "left")
            assert paper.label_baseline_px == paper.height_px - 103
        else:
            assert (paper.label_x_px, paper.label_baseline_px - 37) == tuple(anchor)
            assert paper.label_align == "right"


def test_page_sizes_in_points():
    sizes = {name: paper.size_pt for name, paper in PAPERS.items()}
    assert sizes["letter"] == pytest.approx((792, 612))
    assert sizes["tabloid"] == pytest.approx((792, 1224))
    assert sizes["a4"] == pytest.approx((842.16, 595.44))
    assert sizes["a3"] == pytest.approx((1190.4, 841.92))
    assert sizes["archb"] == pytest.approx((1296, 864))
    assert PT_PER_PX == pytest.approx(0.24)


@pytest.mark.parametrize("paper", sorted(UNSUPPORTED))
def test_unsupported_combinations_name_the_alternatives(paper):
    for card in UNSUPPORTED[paper]:
        with pytest.raises(CardError) as info:
            get_layout(paper, card)
        message = str(info.value)
        assert card in message and paper in message
        for supported in set(CARD_SIZES) - UNSUPPORTED[paper]:
            assert supported in message


def test_unknown_names_list_what_exists():
    with pytest.raises(CardError, match="supported: letter, tabloid, a4, a3, archb"):
        get_layout("legal", "standard")
    with pytest.raises(CardError, match="standard, japanese"):
        get_layout("letter", "tarot")


def test_supported_layouts_table():
    rows = supported_layouts()
    assert len(rows) == 19
    letter = rows[0]
    assert letter["paper_size"] == "letter" and letter["card_size"] == "standard"
    assert letter["cards_per_sheet"] == 8 and letter["template"] == "letter_standard_v3"
    assert {r["cards_per_sheet"] for r in rows if r["paper_size"] == "tabloid"} == {16, 40}


def test_mirror_turns_the_sheet_top_to_bottom():
    layout = get_layout("letter", "poker_half")     # 5 x 3
    assert [layout.mirror(s) for s in (0, 4, 5, 7, 10, 14)] == [10, 14, 5, 7, 0, 4]
    # the table's own y of the mirrored row, not a computed mirror (spec §5.4)
    poker = get_layout("letter", "poker")
    assert poker.slot_origin(poker.mirror(0)) == (132, 1283)


def test_single_row_or_column_bleed_is_bounded_by_the_page():
    paper = PAPERS["letter"]
    one_column = Layout(paper, "standard", 742, 1036, (141,), (232, 1282), "x")
    assert one_column.bleed == (7, 7)              # borrows the y rule, within the margin
    one_row = Layout(paper, "standard", 742, 1036, (141, 900), (232,), "x")
    assert one_row.bleed == (9, 9)
    tight = Layout(paper, "standard", 742, 1036, (5,), (232, 1282), "x")
    assert tight.bleed == (5, 7)                   # clipped to the 5 px left margin
    single = Layout(paper, "standard", 742, 1036, (141,), (232,), "x")
    assert single.bleed == (0, 0)


def test_engine_imports_no_web_or_queue_code():
    """app/cards is pure: only cli.py may import Flask (and nothing imports Celery/Redis)."""
    import ast
    from pathlib import Path

    import app.cards

    for path in Path(app.cards.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for alias in node.names}
        modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module}
        banned = {"celery", "redis", "kombu"} | (set() if path.name == "cli.py" else {"flask", "click"})
        assert not modules & banned, (path.name, modules & banned)
