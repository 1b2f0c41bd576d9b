import pytest

from app.settings import DEFAULT_JWT_SECRET, SettingsError, load_settings
from app.urls import mask_url


def test_queue_repeats_become_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("CELERY_QUEUES", "pdf_generation,pdf_generation,pdf_offset,default")
    settings = load_settings(_env_file=None)
    assert settings.queue_weights == {"pdf_generation": 2, "pdf_offset": 1, "default": 1}


def test_unknown_queue_is_named(monkeypatch):
    monkeypatch.setenv("CELERY_QUEUES", "pdf_generation,bogus")
    with pytest.raises(SettingsError, match="bogus"):
        load_settings(_env_file=None)


@pytest.mark.parametrize("secret", [None, DEFAULT_JWT_SECRET, "short", "a" * 64])
def test_production_refuses_weak_secret(monkeypatch, secret):
    monkeypatch.setenv("APP_ENV", "production")
    if secret is not None:
        monkeypatch.setenv("JWT_SECRET_KEY", secret)
    with pytest.raises(SettingsError, match="JWT_SECRET_KEY"):
        load_settings(_env_file=None)


def test_production_accepts_random_secret(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", "Zq8-Vx1_pL0rT7wK3nB9mC2dF6gH4jS5aE0uY")
    assert load_settings(_env_file=None).APP_ENV == "production"


def test_broker_url_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    embedded = load_settings(_env_file=None)
    assert embedded.broker_url == f"redis+socket://{tmp_path}/run/redis.sock"
    assert embedded.wants_embedded_redis

    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss/word")
    monkeypatch.setenv("REDIS_DB", "2")
    built = load_settings(_env_file=None)
    assert built.broker_url == "redis://:p%40ss%2Fword@cache.internal:6379/2"
    assert not built.wants_embedded_redis
    assert "p%40ss" not in mask_url(built.broker_url)

    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest@localhost//")
    explicit = load_settings(_env_file=None)
    assert explicit.broker_url == "amqp://guest@localhost//"
    assert explicit.result_backend == "redis://:p%40ss%2Fword@cache.internal:6379/2"


def test_long_instance_path_keeps_socket_short(tmp_path):
    deep = tmp_path / ("d" * 120)
    settings = load_settings(_env_file=None, INSTANCE_PATH=deep)
    assert len(str(settings.embedded_redis_socket)) < 108


def test_development_secret_is_random_per_instance_and_shared(tmp_path):
    from app import create_app
    from tests.conftest import make_settings

    first = create_app(make_settings(tmp_path / "one", JWT_SECRET_KEY=None))
    again = create_app(make_settings(tmp_path / "one", JWT_SECRET_KEY=None))
    other = create_app(make_settings(tmp_path / "two", JWT_SECRET_KEY=None))
    secret = first.config["JWT_SECRET_KEY"]
    assert len(secret) >= 48 and secret != DEFAULT_JWT_SECRET
    assert again.config["JWT_SECRET_KEY"] == secret          # every process of one instance
    assert other.config["JWT_SECRET_KEY"] != secret          # never shared across instances
    secret_file = tmp_path / "one" / "instance" / "run" / "jwt_secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600


def test_worker_entry_points_default_to_workers_but_respect_an_explicit_false(monkeypatch):
    from app.settings import with_workers_by_default

    assert with_workers_by_default(load_settings(_env_file=None)).START_CELERY_WORKER is True
    monkeypatch.setenv("START_CELERY_WORKER", "false")
    assert with_workers_by_default(load_settings(_env_file=None)).START_CELERY_WORKER is False


def test_entry_points_exit_2_with_the_problem(monkeypatch, capsys):
    from app.settings import load_settings_or_exit

    monkeypatch.setenv("CELERY_CONCURRENCY", "0")
    with pytest.raises(SystemExit) as exited:
        load_settings_or_exit(_env_file=None)
    assert exited.value.code == 2
    assert "CELERY_CONCURRENCY" in capsys.readouterr().err
