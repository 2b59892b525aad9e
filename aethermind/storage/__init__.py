"""PostgreSQL storage for Aethermind: the pool and embedded server, migrations, the span
writer, tenants and keys, and the queries behind the API. asyncpg only.

``migrate`` is deliberately not re-exported here: the attribute would shadow the
``aethermind.storage.migrate`` module. Use ``from aethermind.storage.migrate import migrate``.
"""

from __future__ import annotations

from aethermind.storage.config import DatabaseConfig
from aethermind.storage.database import Database
from aethermind.storage.scope import owner_transaction, tenant_transaction
from aethermind.storage.span_row import TelemetryRow, row_from_usage
from aethermind.storage.writer import write_rows

__all__ = [
    "Database",
    "DatabaseConfig",
    "TelemetryRow",
    "owner_transaction",
    "row_from_usage",
    "tenant_transaction",
    "write_rows",
]
