"""Storage: SQLModel tables, the queries over them, and schema migrations.

The store is the only layer that talks SQL; everything else receives plain
models.  SQLite by default, PostgreSQL by URL.
"""

from mailsms.store.db import make_engine, migrate
from mailsms.store.queries import AcceptedEmail, EnqueueOutcome, NewSms, Store, StoreError
from mailsms.store.runner import Batcher, DbRunner, GroupCommit

__all__ = [
    "AcceptedEmail",
    "Batcher",
    "DbRunner",
    "EnqueueOutcome",
    "GroupCommit",
    "NewSms",
    "Store",
    "StoreError",
    "make_engine",
    "migrate",
]
