"""RestartPolicy: pure decisions from timestamps, driven by a fake clock (no sleeping)."""
from __future__ import annotations

import pytest

from app.supervisor.policy import GIVE_UP, RESTART, RestartPolicy


def policy(**overrides):
    values = dict(max_restarts=5, window=300.0, base_delay=1.0, jitter=0.1, rand=lambda: 0.5)
    values.update(overrides)
    return RestartPolicy(**values)


def test_first_exit_restarts_at_once():
    decision = policy().on_exit(now=100.0)
    assert decision.action == RESTART
    assert decision.delay == 0.0


def test_backoff_grows_exponentially_with_jitter():
    p = policy(rand=lambda: 0.5)
    delays = [p.on_exit(now=100.0 + i).delay for i in range(5)]
    # 0, then 1, 2, 4, 8 seconds, each plus half of the 10 % jitter.
    assert delays == pytest.approx([0.0, 1.05, 2.1, 4.2, 8.4])
    assert all(later > earlier for earlier, later in zip(delays, delays[1:]))


def test_jitter_only_adds_so_delays_keep_growing():
    for value in (0.0, 0.999):
        p = policy(rand=lambda v=value: v)
        delays = [p.on_exit(now=float(i)).delay for i in range(5)]
        assert delays[1] >= 1.0
        assert all(later > earlier for earlier, later in zip(delays, delays[1:]))


def test_delay_is_capped():
    p = policy(max_restarts=50, max_delay=10.0, jitter=0.0)
    delays = [p.on_exit(now=float(i)).delay for i in range(10)]
    assert max(delays) == 10.0


def test_gives_up_after_more_than_max_restarts_in_window():
    p = policy(max_restarts=3, window=60.0)
    actions = [p.on_exit(now=10.0 + i).action for i in range(4)]
    assert actions == [RESTART, RESTART, RESTART, GIVE_UP]
    assert p.on_exit(now=15.0).restarts_in_window == 3


def test_old_restarts_leave_the_window():
    p = policy(max_restarts=2, window=60.0, jitter=0.0)
    p.on_exit(now=0.0)
    p.on_exit(now=1.0)
    assert p.on_exit(now=30.0).action == GIVE_UP
    # 61 s later both earlier restarts are outside the window: immediate restart again.
    later = p.on_exit(now=61.5)
    assert later.action == RESTART and later.delay == 0.0


def test_a_worker_that_crashes_rarely_always_restarts_at_once():
    p = policy(max_restarts=2, window=60.0)
    for hour in range(10):
        decision = p.on_exit(now=hour * 3600.0)
        assert decision.action == RESTART and decision.delay == 0.0


def test_reset_forgets_history():
    p = policy(max_restarts=1)
    p.on_exit(now=0.0)
    assert p.on_exit(now=1.0).action == GIVE_UP
    p.reset()
    decision = p.on_exit(now=2.0)
    assert decision.action == RESTART and decision.delay == 0.0


def test_zero_base_delay_means_no_backoff():
    p = policy(base_delay=0.0)
    assert [p.on_exit(now=float(i)).delay for i in range(5)] == [0.0] * 5


def test_rejects_nonsense():
    with pytest.raises(ValueError):
        RestartPolicy(max_restarts=1, window=0, base_delay=1)
