"""Output paths relative to STORAGE_DIR.

Before STORAGE_DIR, a job's output_path was absolute: <instance>/outputs/<id>.pdf, the
only place a job's output was ever written. Hosts that share storage mount it at their
own paths, so records now hold `outputs/<id>.pdf`. Only paths of exactly that shape
change; anything else is left for the reader to resolve as it is.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text(
        "UPDATE jobs SET output_path = 'outputs/' || id || '.pdf'"
        " WHERE output_path LIKE '/%' AND output_path LIKE '%/outputs/' || id || '.pdf'"))


def downgrade() -> None:
    # Relative paths cannot be made absolute without knowing the instance folder of the
    # time; the older code reads none of them, so a downgrade keeps the rows as they are.
    pass
