"""Alembic environment: runs on the connection mailsms hands in."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from mailsms.store import models  # noqa: F401  (registers the tables)

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - mailsms always passes one
    raise RuntimeError("run migrations through mailsms.store.db.migrate()")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
