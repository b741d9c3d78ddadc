"""sender trust and abuse limits

Sender policy and SMTP AUTH password per allow-list entry, the
Authentication-Results of each accepted email, and the abuse-limit counters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("senders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policy", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("password_hash", sa.String(length=200), nullable=True))

    with op.batch_alter_table("emails", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auth_results", sa.Text(), nullable=True))

    op.create_table(
        "abuse_counters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scope", "key", "window_start", name="uq_abuse_counters_window"),
    )


def downgrade() -> None:
    op.drop_table("abuse_counters")
    with op.batch_alter_table("emails", schema=None) as batch_op:
        batch_op.drop_column("auth_results")
    with op.batch_alter_table("senders", schema=None) as batch_op:
        batch_op.drop_column("password_hash")
        batch_op.drop_column("policy")
