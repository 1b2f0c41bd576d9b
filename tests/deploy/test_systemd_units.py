"""The systemd units: `systemd-analyze verify`, the security exposure, and their facts."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.project_facts import (
    DEPLOY,
    PENDING_SETTINGS,
    ROOT,
    UNITS,
    env_file_names,
    settings_names,
    unit_values,
    unknown_variables,
)

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
MAX_EXPOSURE = 3.0
INSTALL_PREFIX = "/opt/silhouette-card-maker"


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    if not Path(SYSTEMD_ANALYZE).exists():
        pytest.fail("systemd-analyze is missing: .ci/run installs the systemd package")
    return subprocess.run([SYSTEMD_ANALYZE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def installed_units(tmp_path) -> list[Path]:
    """The units as installed: /opt/silhouette-card-maker moved to a folder holding the
    executables they name (verify checks ExecStart= points at something executable)."""
    prefix = tmp_path / "opt"
    (prefix / "venv" / "bin").mkdir(parents=True)
    for unit in UNITS:
        for command in unit_values(unit, "ExecStart"):
            binary = command.split()[0]
            if binary.startswith(INSTALL_PREFIX):
                target = prefix / binary.removeprefix(INSTALL_PREFIX + "/")
                target.write_text("#!/bin/sh\n")
                target.chmod(0o755)
    copies = []
    for unit in UNITS:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(INSTALL_PREFIX, str(prefix)))
        copies.append(copy)
    return copies


def test_three_units_exist():
    assert {u.name for u in UNITS} == {"silhouette-card-maker.service",
                                       "silhouette-card-maker-worker.service",
                                       "silhouette-card-maker-flower.service"}


def test_systemd_analyze_verify_is_clean(installed_units, tmp_path):
    result = analyze("verify", *[u.name for u in installed_units], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr  # no "Unknown key", no warnings


def test_verify_catches_a_broken_unit(installed_units, tmp_path):
    unit = next(u for u in installed_units if u.name == "silhouette-card-maker.service")
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notfy"))
    result = analyze("verify", unit.name, cwd=tmp_path)
    assert "notfy" in result.stderr


@pytest.mark.parametrize("name", [u.name for u in UNITS])
def test_security_exposure_at_most_3(installed_units, tmp_path, name):
    result = analyze("security", "--offline=true", "--no-pager", name, cwd=tmp_path)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


@pytest.mark.parametrize("unit", [u for u in UNITS if "flower" not in u.name],
                         ids=lambda u: u.name)
def test_app_units_notify_watchdog_reload_state(unit):
    text = unit.read_text()
    assert "Type=notify" in text and "NotifyAccess=main" in text
    assert re.search(r"^WatchdogSec=\d+s$", text, re.M)
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert "StateDirectory=silhouette-card-maker" in text
    # The instance folder is the state directory systemd creates for the user.
    assert "Environment=INSTANCE_PATH=/var/lib/silhouette-card-maker" in text


def test_units_name_only_real_settings_and_commands():
    for unit in UNITS:
        names = {value.split("=", 1)[0] for value in unit_values(unit, "Environment")}
        assert not unknown_variables(names), (unit.name, unknown_variables(names))
        for command in unit_values(unit, "ExecStart"):
            script = command.split()[0].rsplit("/", 1)[-1]
            assert script in project_console_scripts() | {"celery"}, command
    assert not unknown_variables(env_file_names(DEPLOY / "env.example"))


def test_pending_settings_are_still_pending():
    # When the scale-out work adds these to Settings, drop them from PENDING_SETTINGS.
    assert not PENDING_SETTINGS & settings_names()


def project_console_scripts() -> set[str]:
    import tomllib
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"]["scripts"])


def test_install_steps_name_files_that_exist():
    text = (DEPLOY / "README.md").read_text()
    steps = text[text.index("```sh"):text.index("## Docker Compose")]
    named = set(re.findall(r"\bdeploy/[\w.\-]+", steps))
    assert {"deploy/env.example", "deploy/silhouette-card-maker.service",
            "deploy/nginx.conf"} <= named
    for path in named:
        assert (ROOT / path).exists(), path
    # The folder the env file goes into is created before the file is installed.
    assert steps.index("install -d -m 0750 -o root -g scm /etc/silhouette-card-maker") < \
        steps.index("/etc/silhouette-card-maker/env")
    # Every unit reads the file those steps install, runs as the user they create.
    for unit in UNITS:
        assert unit_values(unit, "EnvironmentFile") == ["/etc/silhouette-card-maker/env"]
        assert unit_values(unit, "User") == ["scm"]
    assert "useradd --system" in steps and " scm\n" in steps
