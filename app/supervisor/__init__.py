"""The Celery worker supervisor: the manager, its processes and policy, the handle that
reaches the instance's one manager, and the admin API. Wiring: `app.runtime`."""
from app.supervisor.api import init_app, manager_handle
from app.supervisor.control import ManagerHandle

__all__ = ["ManagerHandle", "init_app", "manager_handle"]
