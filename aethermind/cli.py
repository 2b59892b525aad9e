"""The ``aethermind`` command: the composition root, the only place that wires the database,
the receiver and the reports together.

Every command that prints a result takes ``--json`` and then prints exactly one JSON document
on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from aethermind import __version__

if TYPE_CHECKING:
    from aethermind.receiver.config import ReceiverConfig

logger = logging.getLogger("aethermind.cli")

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, Any]]


class CliError(Exception):
    """A user mistake: printed as one line (or one JSON error document), exit status 2."""


# --- output -------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    from aethermind.receiver.query import jsonable

    return jsonable(value)


def emit(args: argparse.Namespace, document: Any, human: Callable[[], None]) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(_jsonable(document), indent=2) + "\n")
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


async def _organization(pool: Any, slug: str) -> Any:
    from aethermind.storage.tenants import get_organization_by_slug

    organization = await get_organization_by_slug(pool, slug)
    if organization is None:
        raise CliError(f"no organization with slug {slug!r} (see `aethermind org list`)")
    return organization


def _organization_doc(org: Any) -> dict[str, Any]:
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


def _key_doc(key: Any, full_key: str | None = None) -> dict[str, Any]:
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


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{name} must be an ISO 8601 date or date-time, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _money(value: str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CliError(f"{name} must be a decimal number, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise CliError(f"{name} must be a non-negative number, got {value!r}")
    return amount


# --- commands -----------------------------------------------------------------------------


async def cmd_migrate(args: argparse.Namespace) -> None:
    from aethermind.storage.migrate import migrate as apply_migrations

    async with open_pool(args, migrate=False) as pool:
        applied = await apply_migrations(pool)
    emit(
        args,
        {"applied": applied},
        lambda: print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none'}"),
    )


async def cmd_org_create(args: argparse.Namespace) -> None:
    from aethermind.storage.tenants import (
        OrganizationExistsError,
        create_key,
        create_organization,
    )

    async with open_pool(args) as pool:
        try:
            org = await create_organization(
                pool,
                args.name,
                slug=args.slug,
                plan=args.plan,
                rate_limit_per_min=args.rate_limit,
                retention_days=args.retention_days,
                capture_content=args.capture_content,
            )
        except (OrganizationExistsError, ValueError) as exc:
            raise CliError(str(exc)) from exc
        key, full_key = await create_key(pool, org.id, ["ingest"], name="ingest")
    document = {"organization": _organization_doc(org), "key": _key_doc(key, full_key)}

    def human() -> None:
        print(f"organization {org.slug} ({org.id}), plan {org.plan}")
        print(f"ingest key (shown once): {full_key}")

    emit(args, document, human)


async def cmd_org_list(args: argparse.Namespace) -> None:
    from aethermind.storage.tenants import list_organizations

    async with open_pool(args) as pool:
        orgs = await list_organizations(pool)
    docs = [_organization_doc(o) for o in orgs]
    emit(args, {"organizations": docs}, lambda: _table(docs, ["slug", "name", "plan", "id"]))


async def cmd_key_create(args: argparse.Namespace) -> None:
    from aethermind.storage.tenants import create_key

    scopes = args.scope or ["ingest"]
    async with open_pool(args) as pool:
        org = await _organization(pool, args.org)
        try:
            key, full_key = await create_key(pool, org.id, scopes, name=args.name)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    emit(
        args,
        _key_doc(key, full_key),
        lambda: print(f"key {key.id} scopes {','.join(key.scopes)} (shown once): {full_key}"),
    )


async def cmd_key_list(args: argparse.Namespace) -> None:
    from aethermind.storage.tenants import list_keys

    async with open_pool(args) as pool:
        org = await _organization(pool, args.org)
        keys = await list_keys(pool, org.id)
    docs = [_key_doc(k) for k in keys]
    emit(
        args,
        {"keys": docs},
        lambda: _table(docs, ["id", "public_id", "name", "scopes", "created_at", "revoked_at"]),
    )


async def cmd_key_revoke(args: argparse.Namespace) -> None:
    from aethermind.storage.tenants import revoke_key

    async with open_pool(args) as pool:
        key = await revoke_key(pool, args.key_id)
    if key is None:
        raise CliError(f"no key with id {args.key_id!r}")
    emit(args, _key_doc(key), lambda: print(f"key {key.id} revoked at {key.revoked_at}"))


async def cmd_stats(args: argparse.Namespace) -> None:
    from aethermind.receiver.errors import BadRequest
    from aethermind.receiver.query import parse_aggregate_params
    from aethermind.storage.queries import aggregates

    params = {
        k: v
        for k, v in (
            ("from", args.from_),
            ("to", args.to),
            ("group_by", args.group_by),
            ("granularity", args.granularity),
            ("provider", args.provider),
            ("model", args.model),
            ("service", args.service),
        )
        if v
    }
    try:
        parsed = parse_aggregate_params(params)
    except BadRequest as exc:
        raise CliError(exc.message) from exc
    async with open_pool(args) as pool:
        org = await _organization(pool, args.org)
        rows = await aggregates(
            pool,
            org.id,
            parsed["from_"],
            parsed["to"],
            group_by=parsed["group_by"],
            granularity=parsed["granularity"],
            filters=parsed["filters"],
        )
    document = {
        "from": parsed["from_"],
        "to": parsed["to"],
        "group_by": parsed["group_by"],
        "granularity": parsed["granularity"],
        "rows": rows,
    }

    def human() -> None:
        columns = [*parsed["group_by"], *(["bucket"] if parsed["granularity"] else [])]
        flat = [
            {
                **row,
                "p50_ms": row["latency_ms"]["p50"],
                "p95_ms": row["latency_ms"]["p95"],
            }
            for row in rows
        ]
        _table(
            flat,
            [*columns, "calls", "errors", "input_tokens", "output_tokens", "total_tokens",
             "cost_usd", "unpriced_calls", "p50_ms", "p95_ms"],
            title=f"{org.slug}: {parsed['from_']:%Y-%m-%d %H:%M} to {parsed['to']:%H:%M %Y-%m-%d}",
        )  # fmt: skip

    emit(args, document, human)


async def cmd_reprice(args: argparse.Namespace) -> None:
    from rich.progress import Progress

    from aethermind.receiver.overrides import load_price_overrides
    from aethermind.semconv import UsageRecord, default_price_book
    from aethermind.storage.reprice import reprice

    start = _time(args.from_, "--from") or datetime(1970, 1, 1, tzinfo=UTC)
    end = _time(args.to, "--to") or datetime.now(UTC)
    async with open_pool(args) as pool:
        org = await _organization(pool, args.org)
        overrides = await load_price_overrides(pool, org.id)
        book = default_price_book()

        def price(record: UsageRecord, at: datetime) -> Any:
            return book.price(record, int(at.timestamp() * 1_000_000) * 1000, overrides=overrides)

        with Progress(console=_stderr_console(), disable=args.json) as progress:
            task = progress.add_task(f"repricing {org.slug}", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = await reprice(pool, org.id, start, end, price, progress=on_progress)
    emit(
        args,
        {"organization": org.slug, "examined": result.examined, "changed": result.changed},
        lambda: print(
            f"repriced {org.slug}: {result.examined} spans examined, {result.changed} changed"
        ),
    )


async def cmd_retention(args: argparse.Namespace) -> None:
    from aethermind.storage.retention import apply_retention

    async with open_pool(args) as pool:
        result = await apply_retention(pool)
    document = {
        "dropped_partitions": list(result.dropped_partitions),
        "deleted_spans": result.deleted_spans,
        "deleted_rollup_rows": result.deleted_rollup_rows,
    }
    emit(args, document, lambda: print(json.dumps(document)))


async def cmd_price_set(args: argparse.Namespace) -> None:
    from aethermind.storage.prices import create_price

    async with open_pool(args) as pool:
        org = await _organization(pool, args.org)
        price = await create_price(
            pool,
            org.id,
            args.model,
            input_per_mtok=_money(args.input_per_mtok, "--input-per-mtok"),
            output_per_mtok=_money(args.output_per_mtok, "--output-per-mtok"),
            cache_read_per_mtok=_money(args.cache_read_per_mtok, "--cache-read-per-mtok"),
            cache_write_per_mtok=_money(args.cache_write_per_mtok, "--cache-write-per-mtok"),
            valid_from=_time(args.from_, "--from"),
        )
    document = price.as_dict()
    emit(args, document, lambda: print(f"price {price.id} for {price.model_pattern} set"))


async def cmd_price_list(args: argparse.Namespace) -> None:
    from aethermind.storage.prices import list_prices

    async with open_pool(args) as pool:
        org = await _organization(pool, args.org)
        prices = await list_prices(pool, org.id)
    docs = [p.as_dict() for p in prices]
    emit(
        args,
        {"prices": docs},
        lambda: _table(docs, ["id", "model_pattern", "input_per_mtok", "output_per_mtok",
                              "cache_read_per_mtok", "valid_from"]),
    )  # fmt: skip


async def cmd_price_delete(args: argparse.Namespace) -> None:
    from aethermind.storage.prices import delete_price

    async with open_pool(args) as pool:
        org = await _organization(pool, args.org)
        deleted = await delete_price(pool, org.id, args.price_id)
    if not deleted:
        raise CliError(f"no price {args.price_id!r} in organization {args.org!r}")
    emit(args, {"deleted": args.price_id}, lambda: print(f"price {args.price_id} deleted"))


async def cmd_budget_set(args: argparse.Namespace) -> None:
    from aethermind.storage.budgets import (
        budget_report,
        parse_thresholds,
        set_budget,
        validate_webhook_url,
    )

    limit = _money(args.monthly_usd, "--monthly-usd")
    if limit is None or limit == 0:
        raise CliError(f"--monthly-usd must be a positive amount in USD, got {args.monthly_usd!r}")
    try:
        thresholds = None if args.thresholds is None else parse_thresholds(args.thresholds)
    except ValueError as exc:
        raise CliError(f"--thresholds: {exc}") from exc
    raw_url = args.webhook_url
    if raw_url == "-":
        # From standard input, so the secret in the URL never sits in argv (which `ps` shows
        # to every user of the machine) or in shell history.
        raw_url = sys.stdin.readline().strip()
        if not raw_url:
            raise CliError("--webhook-url -: expected the URL on standard input, got nothing")
    try:
        webhook_url = None if raw_url is None else validate_webhook_url(raw_url)
    except ValueError as exc:
        raise CliError(f"--webhook-url: {exc}") from exc
    async with open_pool(args) as pool:
        org = await _organization(pool, args.org)
        try:
            await set_budget(
                pool, org.id, monthly_limit_usd=limit, thresholds=thresholds,
                webhook_url=webhook_url,
            )  # fmt: skip
        except ValueError as exc:
            raise CliError(f"organization {org.slug!r}: {exc} (--webhook-url)") from exc
        report = await budget_report(pool, org.id, org.slug)
    assert report is not None  # set just now, in this organization
    budget = report.budget
    emit(
        args,
        report.as_dict(),
        lambda: print(
            f"budget for {org.slug}: {budget.monthly_limit_usd} USD a month, alerts at "
            f"{','.join(str(t) for t in budget.thresholds)}% to {budget.webhook_host}"
        ),
    )


async def cmd_budget_show(args: argparse.Namespace) -> None:
    from aethermind.storage.budgets import budget_report

    async with open_pool(args) as pool:
        org = await _organization(pool, args.org)
        report = await budget_report(pool, org.id, org.slug)
    if report is None:
        raise CliError(f"organization {args.org!r} has no budget (see `aethermind budget set`)")
    document = report.as_dict()

    def human() -> None:
        _table(
            document["thresholds"],
            ["threshold", "crossed", "status", "attempts", "delivered_at", "last_error"],
            title=f"{org.slug} {document['month']}: {_cell(document['month_to_date_usd'])} of "
            f"{_cell(report.budget.monthly_limit_usd)} USD ({_cell(document['percent_used'])}%),"
            f" webhook {report.budget.webhook_host}",
        )

    emit(args, document, human)


async def cmd_serve(args: argparse.Namespace) -> None:
    from aethermind.receiver.app import create_app
    from aethermind.receiver.config import ReceiverConfig
    from aethermind.receiver.serve import run_until_signal

    config = ReceiverConfig.from_env(
        host=args.host,
        port=args.port,
        keep_all_spans=args.keep_all_spans or None,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        redis_url=args.redis_url,
        cors_origins=args.cors_origin,
        max_body_bytes=args.max_body_bytes,
        workers=args.workers,
        listen_fds=tuple(args.listen_fd) if args.listen_fd else None,
        recycle_connection_every=RECYCLE_CONNECTION_EVERY if args.worker else None,
    )
    # A worker process serves only: its supervisor migrated and bootstrapped already.
    async with open_database(args, migrate=not args.worker) as database:
        if not args.worker:
            await _bootstrap_default_organization(database.pool)
        if config.workers > 1 and not args.worker:
            await _supervise_workers(args, database.dsn, config)
            return

        @contextlib.asynccontextmanager
        async def provide_pool() -> AsyncIterator[Any]:
            yield database.pool  # owned here: closed after the app has drained

        await run_until_signal(create_app(config, provide_pool), config)


RECYCLE_CONNECTION_EVERY = 8
"""Workers close about one keep-alive connection in 8 responses, so connections rebalance."""


async def _supervise_workers(args: argparse.Namespace, dsn: str, config: ReceiverConfig) -> None:
    """Run ``config.workers`` serving processes on listening sockets bound here and handed
    down, with this process's database; forward SIGTERM/SIGINT to them and wait for them to
    drain. If one dies, stop all and fail, so the orchestrator restarts the whole receiver."""
    import signal

    from aethermind.receiver.serve import bind_shared_listeners

    forwarded = [
        "--log-level", args.log_level,
        *(["--host", args.host] if args.host else []),
        *(["--port", str(args.port)] if args.port else []),
        *(["--keep-all-spans"] if args.keep_all_spans else []),
        *(["--tls-cert", args.tls_cert, "--tls-key", args.tls_key] if args.tls_cert else []),
        *(["--redis-url", args.redis_url] if args.redis_url else []),
        *[flag for origin in args.cors_origin or [] for flag in ("--cors-origin", origin)],
        *(["--max-body-bytes", str(args.max_body_bytes)] if args.max_body_bytes else []),
    ]  # fmt: skip
    listeners = bind_shared_listeners(config.host, config.port)
    fds = [sock.fileno() for sock in listeners]
    forwarded += [flag for fd in fds for flag in ("--listen-fd", str(fd))]
    command = [sys.executable, "-m", "aethermind.cli", "serve", "--worker", *forwarded]
    # The URL goes by environment, not argv: argv is readable by every user of the machine.
    env = {**os.environ, "DATABASE_URL": dsn}
    try:
        processes = [
            await asyncio.create_subprocess_exec(*command, env=env, pass_fds=fds)
            for _ in range(config.workers)
        ]
    finally:
        # Only the workers listen: once they have stopped, new connections are refused
        # rather than left waiting in a backlog nobody accepts from.
        for sock in listeners:
            sock.close()
    logger.info("started workers", extra={"workers": [p.pid for p in processes]})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exits = [asyncio.ensure_future(p.wait()) for p in processes]
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
    died = not stop.is_set()
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    await asyncio.gather(*exits)
    stopping.cancel()
    if died:
        raise CliError("a worker process exited unexpectedly; stopped the others")


async def _bootstrap_default_organization(pool: Any) -> None:
    """On an empty database, create ``default`` and print its keys, this once only."""
    from aethermind.storage.tenants import (
        OrganizationExistsError,
        create_key,
        create_organization,
        list_organizations,
    )

    if await list_organizations(pool):
        return
    try:
        org = await create_organization(pool, "default", slug="default")
    except OrganizationExistsError:
        return  # another replica got there first
    _, ingest_key = await create_key(pool, org.id, ["ingest"], name="default ingest")
    _, read_key = await create_key(pool, org.id, ["read"], name="default read")
    print(
        "Created organization 'default'. Its keys are shown only this once:\n"
        f"  ingest key: {ingest_key}\n"
        f"  read key:   {read_key}",
        flush=True,
    )


# --- argument parsing ---------------------------------------------------------------------


def _table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str | None = None
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    rendered = _jsonable(value)
    return rendered if isinstance(rendered, str) else str(rendered)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _common(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (env DATABASE_URL)")
    parser.add_argument(
        "--data-dir", default=None, help="embedded PostgreSQL directory (env AETHERMIND_DATA_DIR)"
    )
    parser.add_argument("--log-level", default="WARNING", help="stderr log level")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print one JSON document")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aethermind", description="LLM cost and usage telemetry")
    parser.add_argument("--version", action="version", version=f"aethermind {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the receiver (OTLP ingest, query API, dashboard)")
    _common(serve, json_flag=False)
    serve.set_defaults(log_level="INFO")
    serve.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default 4318)")
    serve.add_argument("--keep-all-spans", action="store_true", help="store non-GenAI spans too")
    serve.add_argument("--tls-cert", default=None)
    serve.add_argument("--tls-key", default=None)
    serve.add_argument("--redis-url", default=None, help="shared rate limits (env REDIS_URL)")
    serve.add_argument("--cors-origin", action="append", default=None, help="allowed origin")
    serve.add_argument("--max-body-bytes", type=int, default=None)
    serve.add_argument(
        "--workers", type=int, default=None, help="serving processes (env AETHERMIND_WORKERS)"
    )
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--listen-fd", type=int, action="append", help=argparse.SUPPRESS)
    serve.set_defaults(handler=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    _common(migrate)
    migrate.set_defaults(handler=cmd_migrate)

    org = sub.add_parser("org", help="organizations").add_subparsers(
        dest="org_command", required=True
    )
    create = org.add_parser("create", help="create an organization and its first ingest key")
    _common(create)
    create.add_argument("name")
    create.add_argument("--slug")
    create.add_argument("--plan", choices=["FREE", "PRO", "ENTERPRISE"], default="FREE")
    create.add_argument("--rate-limit", type=int, help="spans per minute (default: the plan's)")
    create.add_argument("--retention-days", type=int, help="default: the plan's")
    create.add_argument("--capture-content", action="store_true", help="store prompt content")
    create.set_defaults(handler=cmd_org_create)
    listing = org.add_parser("list", help="list organizations")
    _common(listing)
    listing.set_defaults(handler=cmd_org_list)

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="key_command", required=True)
    kcreate = key.add_parser("create", help="create a key (shown once)")
    _common(kcreate)
    kcreate.add_argument("--org", required=True, help="organization slug")
    kcreate.add_argument("--scope", action="append", choices=["ingest", "read", "admin"])
    kcreate.add_argument("--name")
    kcreate.set_defaults(handler=cmd_key_create)
    klist = key.add_parser("list", help="list an organization's keys")
    _common(klist)
    klist.add_argument("--org", required=True)
    klist.set_defaults(handler=cmd_key_list)
    krevoke = key.add_parser("revoke", help="revoke a key by id")
    _common(krevoke)
    krevoke.add_argument("key_id")
    krevoke.set_defaults(handler=cmd_key_revoke)

    stats = sub.add_parser("stats", help="usage and cost, as GET /v1/aggregates reports it")
    _common(stats)
    stats.add_argument("--org", required=True)
    stats.add_argument("--from", dest="from_")
    stats.add_argument("--to")
    stats.add_argument("--group-by", default="provider,model")
    stats.add_argument("--granularity", choices=["minute", "hour", "day", "week", "month"])
    stats.add_argument("--provider")
    stats.add_argument("--model")
    stats.add_argument("--service")
    stats.set_defaults(handler=cmd_stats)

    reprice = sub.add_parser("reprice", help="recompute stored costs with current prices")
    _common(reprice)
    reprice.add_argument("--org", required=True)
    reprice.add_argument("--from", dest="from_")
    reprice.add_argument("--to")
    reprice.set_defaults(handler=cmd_reprice)

    retention = sub.add_parser("retention", help="drop data past each organization's retention")
    _common(retention)
    retention.set_defaults(handler=cmd_retention)

    price = sub.add_parser("price", help="per-organization price overrides").add_subparsers(
        dest="price_command", required=True
    )
    pset = price.add_parser("set", help="add a price for models matching a pattern")
    _common(pset)
    pset.add_argument("--org", required=True)
    pset.add_argument("--model", required=True, help="model name or fnmatch pattern")
    pset.add_argument("--input-per-mtok", required=True)
    pset.add_argument("--output-per-mtok", required=True)
    pset.add_argument("--cache-read-per-mtok")
    pset.add_argument("--cache-write-per-mtok")
    pset.add_argument("--from", dest="from_", help="valid from (default now)")
    pset.set_defaults(handler=cmd_price_set)
    plist = price.add_parser("list")
    _common(plist)
    plist.add_argument("--org", required=True)
    plist.set_defaults(handler=cmd_price_list)
    pdelete = price.add_parser("delete")
    _common(pdelete)
    pdelete.add_argument("--org", required=True)
    pdelete.add_argument("price_id")
    pdelete.set_defaults(handler=cmd_price_delete)

    budget = sub.add_parser("budget", help="monthly budget alerts").add_subparsers(
        dest="budget_command", required=True
    )
    bset = budget.add_parser("set", help="set an organization's monthly budget and webhook")
    _common(bset)
    bset.add_argument("--org", required=True)
    bset.add_argument("--monthly-usd", required=True, help="monthly limit in USD")
    bset.add_argument("--thresholds", help="alert percentages (default 50,80,100)")
    bset.add_argument(
        "--webhook-url",
        help="Slack-compatible webhook (needed for a new budget); '-' reads it from stdin",
    )
    bset.set_defaults(handler=cmd_budget_set)
    bshow = budget.add_parser("show", help="budget, month-to-date cost and alert status")
    _common(bshow)
    bshow.add_argument("--org", required=True)
    bshow.set_defaults(handler=cmd_budget_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from aethermind.receiver.logs import configure_logging
    from aethermind.receiver.serve import install_uvloop

    configure_logging(args.log_level.upper())
    install_uvloop()
    handler: Command = args.handler
    try:
        asyncio.run(handler(args))
    except CliError as exc:
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        else:
            print(f"aethermind: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
