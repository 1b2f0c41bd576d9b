import pytest

from app.settings import DEFAULT_JWT_SECRET, SettingsError, load_settings, mask_url


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
