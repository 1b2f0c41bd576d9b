"""The broker settings of issue 8 (point 5): JSON transport options merged over the
defaults, validated with clear messages; what each transport can tell the supervisor."""
from __future__ import annotations

import pytest

from app.celery_config import make_celery
from app.settings import SettingsError, load_settings
from app.transports import depth_unknown_reason, family, has_broadcast
from tests.conftest import make_settings


def test_transport_options_merge_over_the_defaults(tmp_path):
    settings = make_settings(
        tmp_path, CELERY_BROKER_URL="sqs://a:b@127.0.0.1:1", CELERY_RESULT_BACKEND="redis://x",
        CELERY_BROKER_TRANSPORT_OPTIONS='{"region": "eu-west-1", "queue_name_prefix": "p-", '
                                        '"visibility_timeout": 900}',
        CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS='{"retry_policy": {"max_retries": 9}}')
    conf = make_celery(settings).conf
    options = conf.broker_transport_options
    assert options["region"] == "eu-west-1" and options["queue_name_prefix"] == "p-"
    assert options["visibility_timeout"] == 900 == settings.visibility_timeout
    assert options["socket_keepalive"] is True          # a default left in place
    assert conf.result_backend_transport_options["retry_policy"] == {"max_retries": 9}
    assert conf.worker_direct is True                     # SQS: canary queues per worker
    plain = make_celery(make_settings(tmp_path, CELERY_BROKER_URL="redis://x")).conf
    assert plain.worker_direct is False and "region" not in plain.broker_transport_options


@pytest.mark.parametrize("value, message", [
    ('{"region": ', "CELERY_BROKER_TRANSPORT_OPTIONS: Value error, not valid JSON"),
    ("[1, 2]", "CELERY_BROKER_TRANSPORT_OPTIONS: Value error, must be a JSON object"),
    ('{"visibility_timeout": 10}', "visibility_timeout must be a number above "
                                   "CELERY_WORKER_TIMEOUT (300 s)"),
])
def test_bad_transport_options_stop_the_start_with_a_clear_message(monkeypatch, value,
                                                                   message):
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CELERY_BROKER_TRANSPORT_OPTIONS", value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert message in str(caught.value)


def test_sqs_without_a_result_backend_is_refused(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "sqs://a:b@127.0.0.1:1")
    with pytest.raises(SettingsError, match="sqs:// carries no replies: set "
                                            "CELERY_RESULT_BACKEND"):
        load_settings(_env_file=None)


@pytest.mark.parametrize("url, kind, broadcast, depth_known", [
    ("redis://127.0.0.1:1/0", "redis", True, True),
    ("redis+socket:///tmp/r.sock", "redis", True, True),
    ("amqp://guest:guest@127.0.0.1:5672//", "amqp", True, True),
    ("sqs://a:b@127.0.0.1:1", "sqs", False, False),
])
def test_what_each_transport_can_tell(url, kind, broadcast, depth_known):
    assert family(url) == kind
    assert has_broadcast(url) is broadcast
    assert (depth_unknown_reason(url) is None) is depth_known
