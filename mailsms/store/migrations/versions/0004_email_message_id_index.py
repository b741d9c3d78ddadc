"""index emails by Message-ID

The group commit finds a batch's already-stored emails with one
``message_id IN (...)`` lookup; without this index SQLite scanned the
whole table for each batch, so accepting got slower as mail accumulated.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_emails_message_id", "emails", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_emails_message_id", table_name="emails")
