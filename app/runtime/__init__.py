"""The composition root: builds each process's services and runs its entry point."""
from app.runtime.hosting import Entry, Hosting, hosting_for
from app.runtime.http import DevServer, GunicornChild, ReloadingDevServer
from app.runtime.lifecycle import Notifier, NullNotifier
from app.runtime.serve import serve
from app.runtime.services import Runtime, runtime_of

__all__ = ["DevServer", "Entry", "GunicornChild", "Hosting", "Notifier", "NullNotifier",
           "ReloadingDevServer", "Runtime", "hosting_for", "runtime_of", "serve"]
