"""ruff and mypy on app/, configured in pyproject.toml: CI runs them through the suite."""
from __future__ import annotations

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
    result = run("mypy")  # files and options: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
