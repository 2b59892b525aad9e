"""PostgreSQL storage for Aethermind: the pool and embedded server, migrations, the span
writer, tenants and keys, and the queries behind the API. asyncpg only.

Import the modules (``aethermind.storage.writer``, ``.queries``, ...): this package itself
imports nothing, so the pure modules (``span_row``, ``dimensions``, ``rollups``) can be used
without loading the driver, as the ingest pipeline does.
"""
