"""`flask cards ...`: results on stdout, one error line and exit code 1 for user mistakes."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from flask import Flask
from pypdf import PdfReader

from app.cli.cards import cards_cli
from tests.cards.helpers import PALETTE


def cli(settings=None):
    app = Flask("cards-cli-test")
    if settings is not None:
        app.config["SETTINGS"] = settings
    app.cli.add_command(cards_cli)
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=["cards", *map(str, args)])


def one_error_line(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def deck(make_deck):
    return make_deck({"fronts": {f"c{k}.png": PALETTE[k] for k in range(9)}, "backs": {"b.png": PALETTE[50]}})


def test_generate_offset_calibration(deck, tmp_path):
    run = cli()
    out = tmp_path / "sheets.pdf"
    result = run("generate", "--front-dir", deck / "fronts", "--back-dir", deck / "backs", "--output", out,
                 "--skip", 4, "--name", "Deck", "--crop", "3mm", "--quality", 90)
    assert result.exit_code == 0, result.output
    assert "4 pages, 2 sheets, 9 cards" in result.stdout
    assert len(PdfReader(out).pages) == 4

    moved = tmp_path / "moved.pdf"
    result = run("offset", out, "--output", moved, "-x", 3, "-y", "-2")
    assert result.exit_code == 0 and "moved pages 2, 4" in result.stdout

    cal = tmp_path / "cal.pdf"
    result = run("calibration", "--paper-size", "a4", "--output", cal)
    assert result.exit_code == 0 and cal.exists()


def test_layouts_lists_the_nineteen_combinations():
    result = cli()("layouts")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 20
    assert lines[1].split()[:2] == ["letter", "standard"] and "letter_standard_v3" in lines[1]


def test_warnings_go_to_stderr(make_deck, tmp_path):
    from PIL import Image
    root = make_deck({"fronts": {"wide.png": Image.new("RGB", (900, 1000))}})
    result = cli()("generate", "--front-dir", root / "fronts", "--output", tmp_path / "o.pdf", "--only-fronts")
    assert result.exit_code == 0
    assert "warning: wide.png differs from the standard card's aspect ratio by" in result.stderr
    assert "front_dir" not in result.stderr


@pytest.mark.parametrize("args, fragments", [
    (["generate", "--front-dir", "/no/such/dir", "--output", "OUT"], ["front_dir", "/no/such/dir"]),
    (["generate", "--front-dir", "FRONTS", "--output", "OUT", "--paper-size", "a3", "--card-size", "poker"],
     ["not available", "a3 supports: standard"]),
    (["generate", "--front-dir", "FRONTS", "--output", "OUT", "--ppi", "abc"], ["--ppi"]),
    (["generate", "--front-dir", "FRONTS", "--output", "OUT", "--ppi", "5"], ["ppi"]),
    (["generate", "--front-dir", "FRONTS", "--output", "OUT", "--crop", "3 cm"], ["crop"]),
    (["generate", "--front-dir", "FRONTS", "--output", "OUT", "--paper-size", "legal"], ["--paper-size", "letter"]),
    (["generate", "--output", "OUT"], ["--front-dir"]),
    (["generate", "--front-dir", "FRONTS", "--back-dir", "TWO", "--output", "OUT"], ["x.png", "y.png", "back_file"]),
    (["generate", "--front-dir", "FRONTS", "--output", "/no/such/dir/o.pdf"], ["output", "/no/such/dir"]),
    (["offset", "FRONTS/c1.png", "--output", "OUT"], ["c1.png", "not a readable PDF"]),
    (["offset", "OUT", "--output", "OUT"], ["not a file"]),
    (["offset", "IN", "--output", "OUT", "-x", "1000"], ["x offset"]),
    (["calibration", "--paper-size", "b5", "--output", "OUT"], ["--paper-size"]),
    (["nosuchcommand"], ["nosuchcommand"]),
])
def test_user_errors_are_one_line_and_exit_1(deck, make_deck, tmp_path, args, fragments):
    two = tmp_path / "two"
    two.mkdir()
    for name in ("x.png", "y.png"):
        (two / name).write_bytes((deck / "backs" / "b.png").read_bytes())
    good = tmp_path / "in.pdf"
    cli()("generate", "--front-dir", deck / "fronts", "--output", good)
    values = {"FRONTS": str(deck / "fronts"), "OUT": str(tmp_path / "o.pdf"), "TWO": str(two), "IN": str(good)}
    args = [values.get(a, a).replace("FRONTS", str(deck / "fronts")) for a in args]
    one_error_line(cli()(*args), *fragments)
    assert not (tmp_path / "o.pdf").exists()


def test_pixel_cap_is_read_from_settings(make_deck, tmp_path):
    from PIL import Image
    root = make_deck({"fronts": {"big.png": Image.new("RGB", (300, 300))}})
    run = cli(SimpleNamespace(MAX_IMAGE_PIXELS=50_000))
    one_error_line(run("generate", "--front-dir", root / "fronts", "--output", tmp_path / "o.pdf"),
                   "too large", "big.png")
    assert cli()("generate", "--front-dir", root / "fronts", "--output", tmp_path / "o.pdf").exit_code == 0


def test_back_file_chooses_among_several(deck, tmp_path):
    (deck / "backs" / "other.png").write_bytes((deck / "backs" / "b.png").read_bytes())
    result = cli()("generate", "--front-dir", deck / "fronts", "--back-dir", deck / "backs",
                   "--back-file", "other.png", "--output", tmp_path / "o.pdf")
    assert result.exit_code == 0, result.output


def test_card_engine_imports_no_framework():
    # The engine is a library: none of its modules imports web or queue code.
    import ast
    from pathlib import Path

    import app.cards
    banned = {"flask", "celery", "redis", "kombu", "werkzeug"}
    offenders = []
    for source in Path(app.cards.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{source.name}: {n}" for n in names if n.split(".")[0] in banned]
    assert offenders == []


def test_cutfile_writes_svg_and_dxf(tmp_path):
    run = cli()
    svg, dxf = tmp_path / "cut.svg", tmp_path / "cut.dxf"
    result = run("cutfile", "--paper-size", "a4", "--card-size", "poker", "--format", "svg",
                 "--corner-radius", "3", "--output", svg)
    assert result.exit_code == 0, result.output
    assert svg.read_text().count('id="card-') == 8
    result = run("cutfile", "--paper-size", "a4", "--card-size", "poker", "--format", "dxf", "--output", dxf)
    assert result.exit_code == 0 and dxf.stat().st_size > 1000
    one_error_line(run("cutfile", "--format", "svg", "--corner-radius", "99", "--output", svg), "corner radius")
