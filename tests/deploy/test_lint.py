"""ruff and mypy on app/, configured in pyproject.toml: CI runs them through the suite.

ruff is clean. mypy is not yet: `mypy_baseline.txt` lists every error it reported when
it was switched on (file, code and message; no line numbers, so unrelated edits do not
churn it). The test fails on any error not listed - new code is typed - and on a
listed error that is gone, so the list only shrinks. Regenerate after fixing some:
    python -m tests.deploy.test_lint > tests/deploy/mypy_baseline.txt
"""
from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

import pytest

from tests.deploy.project_facts import ROOT

BASELINE = ROOT / "tests" / "deploy" / "mypy_baseline.txt"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def mypy_errors() -> list[str]:
    result = run("mypy", "--no-error-summary")  # files and options: [tool.mypy]
    errors = []
    for line in result.stdout.splitlines():
        match = re.match(r"^(\S+?):\d+(?::\d+)?: error: (.*)$", line)
        if match:
            message = re.sub(r"line \d+", "line N", match.group(2))
            errors.append(f"{match.group(1)}: {message}")
    assert errors or result.returncode == 0, result.stdout + result.stderr
    return sorted(errors)


def test_ruff_is_clean_on_app():
    result = run("ruff", "check", "--no-cache", "app")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_reports_nothing_beyond_the_shrinking_baseline():
    known = Counter(line for line in BASELINE.read_text().splitlines() if line.strip())
    found = Counter(mypy_errors())
    new = sorted((found - known).elements())
    fixed = sorted((known - found).elements())
    assert not new, "new mypy errors:\n" + "\n".join(new)
    assert not fixed, ("fixed, remove from tests/deploy/mypy_baseline.txt:\n"
                       + "\n".join(fixed))


if __name__ == "__main__":
    print("\n".join(mypy_errors()))
