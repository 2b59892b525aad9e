"""What every command shares: user errors, output (one JSON document or a table), the
database session a command opens, and the flags every command takes."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

logger = logging.getLogger("aethermind.cli")

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, Any]]


class CliError(Exception):
    """A user mistake: printed as one line (or one JSON error document), exit status 2."""


# --- output -------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    from aethermind.receiver.query import jsonable

    return jsonable(value)


def emit(args: argparse.Namespace, document: Any, human: Callable[[], None]) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(jsonable(document), indent=2) + "\n")
    else:
        human()


# --- database session ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_database(args: argparse.Namespace, *, migrate: bool = True) -> AsyncIterator[Any]:
    """The database the flags and environment name, opened (and migrated) for one command."""
    from aethermind.storage.config import DatabaseConfig
    from aethermind.storage.database import Database
    from aethermind.storage.migrate import migrate as apply_migrations

    config = DatabaseConfig.from_env(args.database_url, args.data_dir)
    database = Database(config)
    pool = await database.open()
    try:
        if config.embedded:
            logger.info("using the embedded PostgreSQL", extra={"data_dir": str(config.data_dir)})
        if migrate:
            applied = await apply_migrations(pool)
            if applied:
                logger.info("applied migrations", extra={"migrations": applied})
        yield database
    finally:
        await database.close()


@contextlib.asynccontextmanager
async def open_pool(args: argparse.Namespace, *, migrate: bool = True) -> AsyncIterator[Any]:
    async with open_database(args, migrate=migrate) as database:
        yield database.pool


async def find_organization(pool: Any, slug: str) -> Any:
    from aethermind.storage.tenants import get_organization_by_slug

    organization = await get_organization_by_slug(pool, slug)
    if organization is None:
        raise CliError(f"no organization with slug {slug!r} (see `aethermind org list`)")
    return organization


def organization_doc(org: Any) -> dict[str, Any]:
    return {
        "id": str(org.id),
        "name": org.name,
        "slug": org.slug,
        "plan": org.plan,
        "rate_limit_per_min": org.rate_limit_per_min,
        "retention_days": org.retention_days,
        "capture_content": org.capture_content,
        "created_at": org.created_at,
    }


def key_doc(key: Any, full_key: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": str(key.id)}
    if full_key is not None:
        doc["key"] = full_key
    doc.update(
        {
            "scopes": list(key.scopes),
            "organization_id": str(key.organization_id),
            "name": key.name,
            "public_id": key.public_id,
            "created_at": key.created_at,
            "last_used_at": key.last_used_at,
            "revoked_at": key.revoked_at,
        }
    )
    return doc


def parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{name} must be an ISO 8601 date or date-time, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_money(value: str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CliError(f"{name} must be a decimal number, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise CliError(f"{name} must be a non-negative number, got {value!r}")
    return amount


def print_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str | None = None
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(cell_text(row.get(c)) for c in columns))
    Console().print(table)


def cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    rendered = jsonable(value)
    return rendered if isinstance(rendered, str) else str(rendered)


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def add_common_flags(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    parser.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="PostgreSQL URL (env DATABASE_URL; default: the embedded PostgreSQL)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="where the embedded PostgreSQL lives (env AETHERMIND_DATA_DIR; default: a "
        "per-user data directory, /var/lib/aethermind for root)",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        metavar="LEVEL",
        help="stderr log level: DEBUG, INFO, WARNING or ERROR",
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def tag_pair(pair: str) -> tuple[str, str]:
    """``--tag team=search`` as the dimension ``tag.team`` and the value ``search``."""
    key, sep, value = pair.partition("=")
    if not sep or not key or not value:
        raise CliError(f"--tag {pair!r} must be KEY=VALUE")
    return f"tag.{key}", value
