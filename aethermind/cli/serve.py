"""``aethermind serve``: the receiver, its worker processes, and the first run's bootstrap."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aethermind.cli.common import CliError, open_database

if TYPE_CHECKING:
    from aethermind.receiver.config import ReceiverConfig

logger = logging.getLogger("aethermind.cli")


async def cmd_serve(args: argparse.Namespace) -> None:
    from aethermind.receiver.app import create_app
    from aethermind.receiver.config import ReceiverConfig
    from aethermind.receiver.serve import run_until_signal

    config = ReceiverConfig.from_env(
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        keep_all_spans=args.keep_all_spans or None,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        redis_url=args.redis_url,
        cors_origins=args.cors_origin,
        trusted_proxies=args.trusted_proxy,
        max_body_bytes=args.max_body_bytes,
        workers=args.workers,
        listen_fds=tuple(args.listen_fd) if args.listen_fd else None,
        recycle_connection_every=RECYCLE_CONNECTION_EVERY if args.worker else None,
    )
    # A worker process serves only: its supervisor migrated and bootstrapped already.
    async with open_database(args, migrate=not args.worker) as database:
        from aethermind.storage.database import RowLevelSecurityError, require_app_role

        try:
            await require_app_role(database.pool)
        except RowLevelSecurityError as exc:
            raise CliError(str(exc)) from exc
        if not args.worker:
            await _bootstrap_default_organization(database.pool, config)
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
    """Run ``config.workers`` serving processes of this command with this process's
    database; fail if one dies, so the orchestrator restarts the whole receiver."""
    from aethermind.receiver.serve import supervise_workers

    forwarded = [
        "--log-level", args.log_level,
        *(["--host", args.host] if args.host else []),
        *(["--port", str(args.port)] if args.port else []),
        *(["--grpc-port", str(args.grpc_port)] if args.grpc_port is not None else []),
        *(["--keep-all-spans"] if args.keep_all_spans else []),
        *(["--tls-cert", args.tls_cert, "--tls-key", args.tls_key] if args.tls_cert else []),
        *(["--redis-url", args.redis_url] if args.redis_url else []),
        *[flag for origin in args.cors_origin or [] for flag in ("--cors-origin", origin)],
        *[flag for cidr in args.trusted_proxy or [] for flag in ("--trusted-proxy", cidr)],
        *(["--max-body-bytes", str(args.max_body_bytes)] if args.max_body_bytes else []),
    ]  # fmt: skip
    command = [sys.executable, "-m", "aethermind.cli", "serve", "--worker", *forwarded]
    # The URL goes by environment, not argv: argv is readable by every user of the machine.
    env = {**os.environ, "DATABASE_URL": dsn}
    if not await supervise_workers(config, command, env=env):
        raise CliError("a worker process exited unexpectedly; stopped the others")


async def _bootstrap_default_organization(pool: Any, config: ReceiverConfig) -> None:
    """On an empty database, create ``default`` with an ingest, a read and an admin key, and
    print them (this once only) with what to do next."""
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
    _, admin_key = await create_key(pool, org.id, ["admin"], name="default admin")
    print(first_run_guide(base_url(config), ingest_key, read_key, admin_key), flush=True)


def base_url(config: ReceiverConfig) -> str:
    """The address a person on this machine reaches the receiver at."""
    host = config.host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding to it
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.tls_cert else "http"
    return f"{scheme}://{host}:{config.port}"


def first_run_guide(url: str, ingest_key: str, read_key: str, admin_key: str) -> str:
    return f"""\
Created organization 'default'. Its keys are shown only this once:
  ingest key: {ingest_key}
  read key:   {read_key}
  admin key:  {admin_key}

Next:
  Dashboard:  {url}/dashboard   (paste the read key)
  Send an app's LLM telemetry here:
    export AETHERMIND_ENDPOINT={url}
    export AETHERMIND_API_KEY={ingest_key}
    # then, in the app (pip install aethermind):
    from aethermind import init_aethermind; init_aethermind()
  Query:  curl -H 'Authorization: Bearer {read_key}' {url}/v1/aggregates
  API:    {url}/openapi.json   More keys: aethermind key create --org default --scope read
"""
