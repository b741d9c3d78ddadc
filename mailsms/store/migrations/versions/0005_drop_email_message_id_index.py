"""drop the emails' Message-ID index: the unique (author, Message-ID) one serves

The group commit now looks a batch's Message-IDs up per author, which the
unique index of ``uq_emails_author_msgid`` answers; the separate index only
cost every accepted email one more index insert, on a random page (real
Message-IDs are random), written whole to the WAL inside SQLite's write lock.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_emails_message_id", table_name="emails")


def downgrade() -> None:
    op.create_index("ix_emails_message_id", "emails", ["message_id"])
