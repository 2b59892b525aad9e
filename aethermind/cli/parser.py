"""The command line: every command, its flags and their help."""

from __future__ import annotations

import argparse

from aethermind import __version__
from aethermind.cli.commands import (
    cmd_budget_set,
    cmd_budget_show,
    cmd_key_create,
    cmd_key_list,
    cmd_key_revoke,
    cmd_migrate,
    cmd_org_create,
    cmd_org_list,
    cmd_price_delete,
    cmd_price_list,
    cmd_price_set,
    cmd_reprice,
    cmd_retention,
)
from aethermind.cli.common import add_common_flags
from aethermind.cli.serve import cmd_serve
from aethermind.cli.stats import cmd_stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aethermind", description="LLM cost and usage telemetry")
    parser.add_argument("--version", action="version", version=f"aethermind {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the receiver (OTLP ingest, query API, dashboard)")
    add_common_flags(serve, json_flag=False)
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
    add_common_flags(migrate)
    migrate.set_defaults(handler=cmd_migrate)

    org = sub.add_parser("org", help="organizations").add_subparsers(
        dest="org_command", required=True
    )
    create = org.add_parser("create", help="create an organization and its first ingest key")
    add_common_flags(create)
    create.add_argument("name")
    create.add_argument("--slug")
    create.add_argument("--plan", choices=["FREE", "PRO", "ENTERPRISE"], default="FREE")
    create.add_argument("--rate-limit", type=int, help="spans per minute (default: the plan's)")
    create.add_argument("--retention-days", type=int, help="default: the plan's")
    create.add_argument("--capture-content", action="store_true", help="store prompt content")
    create.set_defaults(handler=cmd_org_create)
    listing = org.add_parser("list", help="list organizations")
    add_common_flags(listing)
    listing.set_defaults(handler=cmd_org_list)

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="key_command", required=True)
    kcreate = key.add_parser("create", help="create a key (shown once)")
    add_common_flags(kcreate)
    kcreate.add_argument("--org", required=True, help="organization slug")
    kcreate.add_argument("--scope", action="append", choices=["ingest", "read", "admin"])
    kcreate.add_argument("--name")
    kcreate.set_defaults(handler=cmd_key_create)
    klist = key.add_parser("list", help="list an organization's keys")
    add_common_flags(klist)
    klist.add_argument("--org", required=True)
    klist.set_defaults(handler=cmd_key_list)
    krevoke = key.add_parser("revoke", help="revoke a key by id")
    add_common_flags(krevoke)
    krevoke.add_argument("key_id")
    krevoke.set_defaults(handler=cmd_key_revoke)

    stats = sub.add_parser("stats", help="usage and cost, as GET /v1/aggregates reports it")
    add_common_flags(stats)
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
    add_common_flags(reprice)
    reprice.add_argument("--org", required=True)
    reprice.add_argument("--from", dest="from_")
    reprice.add_argument("--to")
    reprice.set_defaults(handler=cmd_reprice)

    retention = sub.add_parser("retention", help="drop data past each organization's retention")
    add_common_flags(retention)
    retention.set_defaults(handler=cmd_retention)

    price = sub.add_parser("price", help="per-organization price overrides").add_subparsers(
        dest="price_command", required=True
    )
    pset = price.add_parser("set", help="add a price for models matching a pattern")
    add_common_flags(pset)
    pset.add_argument("--org", required=True)
    pset.add_argument("--model", required=True, help="model name or fnmatch pattern")
    pset.add_argument("--input-per-mtok", required=True)
    pset.add_argument("--output-per-mtok", required=True)
    pset.add_argument("--cache-read-per-mtok")
    pset.add_argument("--cache-write-per-mtok")
    pset.add_argument("--from", dest="from_", help="valid from (default now)")
    pset.set_defaults(handler=cmd_price_set)
    plist = price.add_parser("list")
    add_common_flags(plist)
    plist.add_argument("--org", required=True)
    plist.set_defaults(handler=cmd_price_list)
    pdelete = price.add_parser("delete")
    add_common_flags(pdelete)
    pdelete.add_argument("--org", required=True)
    pdelete.add_argument("price_id")
    pdelete.set_defaults(handler=cmd_price_delete)

    budget = sub.add_parser("budget", help="monthly budget alerts").add_subparsers(
        dest="budget_command", required=True
    )
    bset = budget.add_parser("set", help="set an organization's monthly budget and webhook")
    add_common_flags(bset)
    bset.add_argument("--org", required=True)
    bset.add_argument("--monthly-usd", required=True, help="monthly limit in USD")
    bset.add_argument("--thresholds", help="alert percentages (default 50,80,100)")
    bset.add_argument(
        "--webhook-url",
        help="Slack-compatible webhook (needed for a new budget); '-' reads it from stdin",
    )
    bset.set_defaults(handler=cmd_budget_set)
    bshow = budget.add_parser("show", help="budget, month-to-date cost and alert status")
    add_common_flags(bshow)
    bshow.add_argument("--org", required=True)
    bshow.set_defaults(handler=cmd_budget_show)
    return parser
