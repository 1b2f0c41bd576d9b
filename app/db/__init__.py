"""The job and user store's database: engines (`engine_for`), tables (`schema`),
migrations (`migrate`, `flask db ...`). SQLite in the instance folder by default,
PostgreSQL when DATABASE_URL says so."""
from __future__ import annotations

import sqlite3

import sqlalchemy.exc

from app.db.engine import as_url, create_engine, dispose_all, engine_for, engine_or_exit

# Failures a retry may cure: a busy SQLite file, a PostgreSQL restart or failover.
TRANSIENT_ERRORS = (sqlalchemy.exc.OperationalError, sqlite3.OperationalError)

__all__ = ["TRANSIENT_ERRORS", "as_url", "create_engine", "dispose_all", "engine_for",
           "engine_or_exit"]
