"""Many hosts, one cluster: what hosts share through the job store's database.

- `lease.Lease`: a cluster-wide role held by one host at a time (the jobs reconciler),
  with a fencing token;
- `registry.HostRegistry`: every host's heartbeat (its manager's workers and mode),
  read by any host's `/api/celery/status`;
- `commands.CommandBoard`: admin commands for another host's manager.
Times are the database server's clock (`clock.db_now`), never a host's.
"""
from app.cluster.commands import CommandBoard, HostCommandError
from app.cluster.lease import Lease, LeaseState
from app.cluster.registry import HostRegistry

__all__ = ["CommandBoard", "HostCommandError", "HostRegistry", "Lease", "LeaseState"]
