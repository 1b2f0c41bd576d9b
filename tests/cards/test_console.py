"""`scm-cards`: installed by `pip install .`, same PDFs as `flask cards`, light imports."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from app.cli.cards import cards_cli
from tests.cards.helpers import PALETTE, gradient_card

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("flask", "PIL", "numpy", "pypdf", "reportlab", "ezdxf", "zlib_ng", "celery", "pydantic")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the project installed from a copy of its source (pip writes a
    build/ folder beside the sources). Dependencies come from the system site-packages:
    CI installs them already, and this keeps the test off the network."""
    base = tmp_path_factory.mktemp("console")
    source = base / "src"
    source.mkdir()
    # Everything pyproject.toml packages: its files, the top-level modules, gunicorn.conf.py.
    for name in ("pyproject.toml", "requirements.txt", "README.md", "gunicorn.conf.py",
                 "celery_app.py", "celery_worker.py", "start_with_celery.py"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", str(source)],
                   check=True, capture_output=True, timeout=300)
    return venv / "bin" / "scm-cards"


def test_scm_cards_is_installed_and_generates_the_flask_commands_bytes(installed, make_deck, tmp_path):
    assert installed.is_file()
    fronts = {f"c{k}.png": gradient_card(k, (300, 420)) for k in range(10)}
    root = make_deck({"fronts": fronts, "backs": {"b.png": PALETTE[5]}})
    args = ["generate", "--front-dir", str(root / "fronts"), "--back-dir", str(root / "backs"),
            "--crop", "3mm", "--extend-corners", "10", "--skip", "2", "--name", "Deck", "--paper-size", "a4"]
    ours = tmp_path / "scm.pdf"
    done = subprocess.run([str(installed), *args, "--output", str(ours)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "4 pages, 2 sheets, 10 cards" in done.stdout

    app = Flask("console-test")
    app.cli.add_command(cards_cli)
    theirs = tmp_path / "flask.pdf"
    result = app.test_cli_runner().invoke(args=["cards", *args, "--output", str(theirs)])
    assert result.exit_code == 0, result.output
    assert ours.read_bytes() == theirs.read_bytes()


def test_scm_cards_errors_are_one_line(installed, tmp_path):
    done = subprocess.run([str(installed), "cutfile", "--format", "pdf", "--output", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "--format" in done.stderr
    done = subprocess.run([str(installed), "cutfile", "--paper-size", "a3", "--card-size", "poker",
                           "--format", "svg", "--output", str(tmp_path / "x.svg")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "not available" in done.stderr
    done = subprocess.run([str(installed), "cutfile", "--format", "dxf", "--output", str(tmp_path / "x.dxf")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and (tmp_path / "x.dxf").read_bytes().startswith(b"  0\nSECTION")


def test_the_command_line_loads_no_heavy_module_before_it_needs_one():
    probe = ("import sys, app.cli.scm_cards as m; "
             "m.cli.main(['--help'], standalone_mode=False); "
             f"print([n for n in {HEAVY!r} if n in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
