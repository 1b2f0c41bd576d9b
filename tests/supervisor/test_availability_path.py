"""Issue 13: a queue's last consumer going away reaches every process's dispatch before
its next submission, including processes that reach the manager through its socket."""
from __future__ import annotations

from app.supervisor.control import ManagerHandle
from tests.conftest import make_settings


class SwitchableManager:
    """The owner's manager as the socket sees it: only what this path calls."""
    consumed = {"default": True}

    def __init__(self, settings):
        self.settings = settings

    def open(self):
        return self

    def close(self, timeout=None):
        pass

    def worker_available(self, queue):
        return self.consumed.get(queue, False)


def test_a_proxy_sees_the_owners_change_on_the_very_next_question(tmp_path):
    settings = make_settings(tmp_path)
    settings.ensure_dirs()
    owner, proxy = ManagerHandle(settings), ManagerHandle(settings)
    try:
        assert owner.acquire(SwitchableManager)
        assert not proxy.acquire(SwitchableManager, takeover=False)
        SwitchableManager.consumed["default"] = True
        assert proxy.worker_available("default") is True
        SwitchableManager.consumed["default"] = False      # its only worker went FAILED
        assert proxy.worker_available("default") is False  # no TTL to wait out
        assert owner.worker_available("default") is False
        SwitchableManager.consumed["default"] = True        # a consumer is back
        assert proxy.worker_available("default") is True
    finally:
        proxy.close()
        owner.close()
