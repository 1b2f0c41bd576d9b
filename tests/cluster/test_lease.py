"""The reconciler lease (app.cluster.lease) on SQLite and PostgreSQL: one holder, takeover
after expiry with a new fencing token, the database's clock, racing takers."""
from __future__ import annotations

import threading
import time

import pytest

from app.cluster.lease import Lease
from app.db import engine_for
from tests.conftest import make_settings, wait_for


@pytest.fixture
def engine(tmp_path, db_backend):
    return engine_for(make_settings(tmp_path).database_url)


def test_one_holder_renews_and_keeps_its_token(engine):
    a, b = Lease(engine, "role", "a/1", 30), Lease(engine, "role", "b/2", 30)
    assert a.acquire() == 1
    assert b.acquire() is None          # held, not expired
    assert a.acquire() == 1             # a renewal is no takeover
    state = b.state()
    assert (state.holder, state.token) == ("a/1", 1)
    assert 25 < state.expires_in <= 30


def test_takeover_after_expiry_fences_the_old_holder(engine):
    a, b = Lease(engine, "role", "a/1", 1), Lease(engine, "role", "b/2", 1)
    assert a.acquire() == 1
    assert b.acquire() is None
    token = wait_for(b.acquire, 5, 0.1, "b takes the expired lease")
    assert token == 2                   # a takeover: the fencing token moved on
    assert a.acquire() is None          # the old holder's renewal fails: it must stop
    assert b.state().holder == "b/2"


def test_release_hands_over_at_once(engine):
    a, b = Lease(engine, "role", "a/1", 60), Lease(engine, "role", "b/2", 60)
    assert a.acquire() == 1
    a.release()
    assert b.acquire() == 2
    assert a.token is None


def test_expiry_is_judged_by_the_database_clock(engine, monkeypatch):
    a, b = Lease(engine, "role", "a/1", 30), Lease(engine, "role", "b/2", 30)
    assert a.acquire() == 1
    # A host whose clock ran an hour ahead must not think the lease expired.
    monkeypatch.setattr(time, "time", lambda: 10_000_000_000.0)
    assert b.acquire() is None


def test_racing_takers_of_an_expired_lease_one_wins(engine):
    first = Lease(engine, "role", "old/0", 1)
    assert first.acquire() == 1
    wait_for(lambda: first.state().expires_in < 0, 5, 0.05, "expiry")
    leases = [Lease(engine, "role", f"host{i}/{i}", 30) for i in range(8)]
    results: list[int | None] = [None] * len(leases)
    start = threading.Barrier(len(leases))

    def take(i: int) -> None:
        start.wait()
        results[i] = leases[i].acquire()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(leases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [i for i, token in enumerate(results) if token is not None]
    assert len(winners) == 1, results
    assert results[winners[0]] == 2
    assert first.state().holder == f"host{winners[0]}/{winners[0]}"


def test_leases_of_different_roles_are_independent(engine):
    assert Lease(engine, "one", "a/1", 30).acquire() == 1
    assert Lease(engine, "two", "b/2", 30).acquire() == 1
