"""ruff and mypy on app/, configured in pyproject.toml: CI runs them through the suite.

Both must report nothing. A `# type: ignore` needs its error code and a comment saying
why (a library without hints, or a stub that is wrong); warn_unused_ignores in the
config fails one that is no longer needed.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.deploy.project_facts import ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def test_ruff_is_clean_on_app():
    result = run("ruff", "check", "--no-cache", "app")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_is_clean_on_app():
    result = run("mypy")  # files and options: [tool.mypy]
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^Success: no issues found in \d+ source files$", result.stdout, re.M), \
        result.stdout


def test_every_type_ignore_names_its_code():
    bare = [f"{path.relative_to(ROOT)}:{number}"
            for path in sorted((ROOT / "app").rglob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"#\s*type:\s*ignore(?!\[)", line)]
    assert not bare, "type: ignore without an error code:\n" + "\n".join(bare)
