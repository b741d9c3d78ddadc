"""lighter SMS indexes: partial ones for the carrier id and the bounce, and
no (from-number, phone) index

Every accepted SMS is written, with each index entry it makes, inside
SQLite's write lock that the worker processes take in turn, and each index
touched is one more page in the group commit's WAL write (about 14 for a
lone email before this):

- a new SMS has no carrier id and no bounce yet, so the full indexes took
  a NULL entry for each; the lookups compare the column (a delivery
  report's ``carrier_id = ?``, ``bounce = 'pending'``), which implies
  ``IS NOT NULL``, so SQLite and PostgreSQL use the partial indexes;
- replies are routed by the conversations table, and no query reads SMS
  by (from-number, phone) any more, yet the index took an entry for every
  SMS, on a random page once the phones vary.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _index_where_set(name: str, columns: list[str], column: str) -> None:
    """``name`` on ``columns`` of the SMS that have a ``column``."""
    where = sa.text(f"{column} IS NOT NULL")
    op.create_index(name, "sms", columns, sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    op.drop_index("ix_sms_carrier_id", table_name="sms")
    _index_where_set("ix_sms_carrier_id", ["carrier", "carrier_id"], "carrier_id")
    op.drop_index("ix_sms_bounce", table_name="sms")
    _index_where_set("ix_sms_bounce", ["bounce"], "bounce")
    op.drop_index("ix_sms_pair", table_name="sms")


def downgrade() -> None:
    op.create_index("ix_sms_pair", "sms", ["from_number", "to_number"])
    op.drop_index("ix_sms_bounce", table_name="sms")
    op.create_index("ix_sms_bounce", "sms", ["bounce"])
    op.drop_index("ix_sms_carrier_id", table_name="sms")
    op.create_index("ix_sms_carrier_id", "sms", ["carrier", "carrier_id"])
