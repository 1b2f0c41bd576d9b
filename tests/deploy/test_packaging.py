"""`pip install .` into a fresh venv gives a working app and console scripts.

The venv sees the already-installed dependencies (--system-site-packages) and builds
without network (--no-deps --no-build-isolation); the project is copied first so the
build leaves nothing in the checkout.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, wait_for
from tests.deploy.project_facts import ROOT

pytestmark = pytest.mark.slow
IGNORED = shutil.ignore_patterns(".git", "instance", "build", "*.egg-info", "__pycache__",
                                 ".pytest_cache", ".hypothesis", "tests", "bench", ".env")


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("pkg")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    env_dir = base / "venv"
    # --without-pip: the system pip is visible through --system-site-packages and installs
    # into the venv it runs in (ensurepip would cost most of this fixture's time).
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(env_dir)], check=True, timeout=120)
    result = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--no-deps",
         "--no-build-isolation", "--disable-pip-version-check", "-q", str(source)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.rmtree(source)  # what runs next comes from the venv, not a source tree
    return env_dir


def test_console_scripts_are_installed(venv):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name in scripts:
        assert (venv / "bin" / name).exists(), name


def test_package_data_and_gunicorn_config_are_installed(venv):
    code = ("import app, pathlib; p = pathlib.Path(app.__file__).parent; "
            "print(p); assert (p / 'web/templates/index.html').exists(); "
            "assert (p / 'web/static/workshop.js').exists()")
    result = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=venv,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert str(venv) in result.stdout  # the installed copy, not the checkout
    assert (venv / "share" / "silhouette-card-maker" / "gunicorn.conf.py").exists()


def test_worker_script_parses_its_command_line(venv, tmp_path):
    result = subprocess.run([str(venv / "bin" / "silhouette-card-maker-worker"), "--help"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--queues" in result.stdout
    bad = subprocess.run([str(venv / "bin" / "silhouette-card-maker-worker"),
                          "--concurrency", "0"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin", "SCM_ENV_FILE": "",
                                          "INSTANCE_PATH": str(tmp_path / "i")})
    assert bad.returncode != 0 and "concurrency" in bad.stderr


def test_main_script_serves_http_and_stops_cleanly(venv, tmp_path):
    port = free_port()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "SCM_ENV_FILE": "", "APP_ENV": "testing", "HOST": "127.0.0.1", "PORT": str(port),
           "INSTANCE_PATH": str(tmp_path / "instance"), "JWT_SECRET_KEY": "p" * 48,
           "EMBEDDED_REDIS": "false", "START_CELERY_WORKER": "false",
           "GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "2"}
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([str(venv / "bin" / "silhouette-card-maker")], cwd=tmp_path,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def healthy():
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                return requests.get(f"http://127.0.0.1:{port}/api/celery/health",
                                    timeout=2).status_code == 200
            except requests.RequestException:
                return False
        wait_for(healthy, 60, interval=0.3, message="the installed app to answer")
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "<html" in page.text.lower()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
