"""The command line: every command, its flags and their help."""

from __future__ import annotations

import argparse

from aethermind import __version__
from aethermind.cli import reconcile
from aethermind.cli.commands import (
    cmd_budget_set,
    cmd_budget_show,
    cmd_key_create,
    cmd_key_list,
    cmd_key_revoke,
    cmd_migrate,
    cmd_org_cost_basis,
    cmd_org_create,
    cmd_org_list,
    cmd_org_tags,
    cmd_price_delete,
    cmd_price_list,
    cmd_price_set,
    cmd_prices_status,
    cmd_reprice,
    cmd_retention,
)
from aethermind.cli.common import add_common_flags
from aethermind.cli.serve import cmd_serve
from aethermind.cli.stats import FILTER_FLAGS, cmd_stats
from aethermind.storage.cost_basis import COST_BASES
from aethermind.storage.queries import GRANULARITIES, GROUP_KEYS, ORDER_KEYS

ORG_HELP = "organization slug (see `aethermind org list`)"
FROM_HELP = "start, ISO 8601 date or date-time, UTC unless it says (default: 30 days before --to)"
TO_HELP = "end, ISO 8601 date or date-time (default: now)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aethermind", description="LLM cost and usage telemetry")
    parser.add_argument("--version", action="version", version=f"aethermind {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the receiver (OTLP ingest, query API, dashboard)")
    add_common_flags(serve, json_flag=False)
    serve.set_defaults(log_level="INFO")
    serve.add_argument(
        "--host", default=None, help="listen address (env AETHERMIND_HOST; default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=None, help="listen port (env AETHERMIND_PORT; default 4318)"
    )
    serve.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        metavar="N",
        help="OTLP/gRPC port for traces, logs and metrics (env AETHERMIND_GRPC_PORT;"
        " default 4317; 0 turns it off)",
    )
    serve.add_argument(
        "--keep-all-spans",
        action="store_true",
        help="store non-GenAI spans too (env AETHERMIND_KEEP_ALL_SPANS)",
    )
    serve.add_argument(
        "--tls-cert", default=None, metavar="PEM", help="serve HTTPS with this certificate chain"
    )
    serve.add_argument("--tls-key", default=None, metavar="PEM", help="private key of --tls-cert")
    serve.add_argument(
        "--redis-url", default=None, help="Redis for rate limits shared by replicas (env REDIS_URL)"
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="let this browser origin call the API (repeatable; '*' for any)",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=None,
        metavar="CIDR",
        help="a load balancer or proxy whose X-Forwarded-For names the client (repeatable;"
        " env AETHERMIND_TRUSTED_PROXIES, comma list)",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        metavar="N",
        help="largest request body, also after decompression (default 16 MiB)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="serving processes sharing the port (env AETHERMIND_WORKERS; default 1)",
    )
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--listen-fd", type=int, action="append", help=argparse.SUPPRESS)
    serve.set_defaults(handler=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    add_common_flags(migrate)
    migrate.set_defaults(handler=cmd_migrate)

    org = sub.add_parser("org", help="organizations").add_subparsers(
        dest="org_command", required=True, metavar="COMMAND"
    )
    create = org.add_parser("create", help="create an organization and its first ingest key")
    add_common_flags(create)
    create.add_argument("name", help="display name")
    create.add_argument("--slug", help="short unique name for commands (default: from the name)")
    create.add_argument(
        "--plan", choices=["FREE", "PRO", "ENTERPRISE"], default="FREE", help="default FREE"
    )
    create.add_argument(
        "--rate-limit", type=int, metavar="N", help="spans per minute (default: the plan's)"
    )
    create.add_argument(
        "--retention-days", type=int, metavar="N", help="days of data kept (default: the plan's)"
    )
    create.add_argument(
        "--capture-content", action="store_true", help="store prompt and completion content"
    )
    create.set_defaults(handler=cmd_org_create)
    listing = org.add_parser("list", help="list organizations")
    add_common_flags(listing)
    listing.set_defaults(handler=cmd_org_list)
    tags = org.add_parser("tags", help="the organization's tag keys (queried as tag.<key>)")
    add_common_flags(tags)
    tags.add_argument("--org", required=True, help=ORG_HELP)
    tags_action = tags.add_mutually_exclusive_group(required=True)
    tags_action.add_argument(
        "--set", metavar="KEYS", help="comma list of at most 8 keys, replacing the current ones"
    )
    tags_action.add_argument("--show", action="store_true", help="print the current keys")
    tags.set_defaults(handler=cmd_org_tags)
    basis = org.add_parser(
        "cost-basis",
        help="which cost totals and budgets count: ours (computed) or the one spans reported",
    )
    add_common_flags(basis)
    basis.add_argument("--org", required=True, help=ORG_HELP)
    basis_action = basis.add_mutually_exclusive_group(required=True)
    basis_action.add_argument(
        "--set",
        choices=COST_BASES,
        help="computed: ours, from the tokens; provided: the cost a span reported, where it did",
    )
    basis_action.add_argument("--show", action="store_true", help="print the current basis")
    basis.set_defaults(handler=cmd_org_cost_basis)

    key = sub.add_parser("key", help="API keys").add_subparsers(
        dest="key_command", required=True, metavar="COMMAND"
    )
    kcreate = key.add_parser("create", help="create a key (shown once)")
    add_common_flags(kcreate)
    kcreate.add_argument("--org", required=True, help=ORG_HELP)
    kcreate.add_argument(
        "--scope",
        action="append",
        choices=["ingest", "read", "admin"],
        help="what the key may do (repeatable; default ingest)",
    )
    kcreate.add_argument("--name", help="a label to recognise the key by")
    kcreate.set_defaults(handler=cmd_key_create)
    klist = key.add_parser("list", help="list an organization's keys")
    add_common_flags(klist)
    klist.add_argument("--org", required=True, help=ORG_HELP)
    klist.set_defaults(handler=cmd_key_list)
    krevoke = key.add_parser("revoke", help="revoke a key by id")
    add_common_flags(krevoke)
    krevoke.add_argument("key_id", help="the key's id (from `key list`)")
    krevoke.set_defaults(handler=cmd_key_revoke)

    stats = sub.add_parser("stats", help="usage and cost, as GET /v1/aggregates reports it")
    add_common_flags(stats)
    stats.add_argument("--org", required=True, help=ORG_HELP)
    stats.add_argument("--from", dest="from_", metavar="FROM", help=FROM_HELP)
    stats.add_argument("--to", metavar="TO", help=TO_HELP)
    stats.add_argument(
        "--group-by",
        default="provider,model",
        metavar="KEYS",
        help=f"comma list of {', '.join(GROUP_KEYS)} (default provider,model; '' for one total)",
    )
    stats.add_argument(
        "--granularity",
        choices=GRANULARITIES,
        help="also split into time buckets",
    )
    for name in FILTER_FLAGS:
        stats.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            metavar=name.upper(),
            help=f"only this {name.replace('_', ' ')}",
        )
    stats.add_argument(
        "--tag",
        action="append",
        metavar="KEY=VALUE",
        help="only spans with this value of a tag key (repeatable)",
    )
    stats.add_argument(
        "--top", type=int, metavar="N", help="only the first N rows (by cost unless --order-by)"
    )
    stats.add_argument("--order-by", choices=ORDER_KEYS, help="order rows by this, descending")
    stats.add_argument(
        "--what-if",
        metavar="MODEL",
        help="also what the same tokens would cost on MODEL at its list prices today",
    )
    stats.set_defaults(handler=cmd_stats)

    reprice = sub.add_parser("reprice", help="recompute stored costs with current prices")
    add_common_flags(reprice)
    reprice.add_argument("--org", required=True, help=ORG_HELP)
    reprice.add_argument(
        "--from", dest="from_", metavar="FROM", help="start, ISO 8601 (default: the beginning)"
    )
    reprice.add_argument("--to", metavar="TO", help=TO_HELP)
    reprice.set_defaults(handler=cmd_reprice)

    prices = sub.add_parser("prices", help="the price data in use").add_subparsers(
        dest="prices_command", required=True, metavar="COMMAND"
    )
    pstatus = prices.add_parser(
        "status",
        help="the genai-prices data in use, calls no price covered, the overrides in force",
    )
    add_common_flags(pstatus)
    pstatus.add_argument("--org", help="one organization (default: all)")
    pstatus.add_argument(
        "--days", type=int, default=30, help="look back this many days for unpriced calls"
    )
    pstatus.set_defaults(handler=cmd_prices_status)

    reconcile.add_parser(sub, add_common_flags, ORG_HELP)

    retention = sub.add_parser("retention", help="drop data past each organization's retention")
    add_common_flags(retention)
    retention.set_defaults(handler=cmd_retention)

    price = sub.add_parser("price", help="per-organization price overrides").add_subparsers(
        dest="price_command", required=True, metavar="COMMAND"
    )
    pset = price.add_parser("set", help="add a price for models matching a pattern")
    add_common_flags(pset)
    pset.add_argument("--org", required=True, help=ORG_HELP)
    pset.add_argument(
        "--model",
        required=True,
        metavar="PATTERN",
        help="model name, or a pattern with up to two * wildcards (ft:gpt-4o*)",
    )
    pset.add_argument(
        "--input-per-mtok", required=True, metavar="USD", help="USD per 1M input tokens"
    )
    pset.add_argument(
        "--output-per-mtok", required=True, metavar="USD", help="USD per 1M output tokens"
    )
    pset.add_argument(
        "--cache-read-per-mtok", metavar="USD", help="USD per 1M cached input tokens read"
    )
    pset.add_argument(
        "--cache-write-per-mtok", metavar="USD", help="USD per 1M input tokens written to cache"
    )
    pset.add_argument(
        "--from", dest="from_", metavar="FROM", help="valid from, ISO 8601 (default now)"
    )
    pset.add_argument(
        "--service-tier",
        metavar="TIER",
        help="only requests served at this tier (batch, flex, priority, ...); default standard",
    )
    pset.set_defaults(handler=cmd_price_set)
    plist = price.add_parser("list", help="list an organization's price overrides")
    add_common_flags(plist)
    plist.add_argument("--org", required=True, help=ORG_HELP)
    plist.set_defaults(handler=cmd_price_list)
    pdelete = price.add_parser("delete", help="delete a price override")
    add_common_flags(pdelete)
    pdelete.add_argument("--org", required=True, help=ORG_HELP)
    pdelete.add_argument("price_id", help="the override's id (from `price list`)")
    pdelete.set_defaults(handler=cmd_price_delete)

    budget = sub.add_parser("budget", help="monthly budget alerts").add_subparsers(
        dest="budget_command", required=True, metavar="COMMAND"
    )
    bset = budget.add_parser("set", help="set an organization's monthly budget and webhook")
    add_common_flags(bset)
    bset.add_argument("--org", required=True, help=ORG_HELP)
    bset.add_argument("--monthly-usd", required=True, metavar="USD", help="monthly limit in USD")
    bset.add_argument(
        "--thresholds", metavar="PERCENTS", help="alert percentages (default 50,80,100)"
    )
    bset.add_argument(
        "--webhook-url",
        metavar="URL",
        help="Slack-compatible webhook (needed for a new budget); '-' reads it from stdin",
    )
    bset.set_defaults(handler=cmd_budget_set)
    bshow = budget.add_parser("show", help="budget, month-to-date cost and alert status")
    add_common_flags(bshow)
    bshow.add_argument("--org", required=True, help=ORG_HELP)
    bshow.set_defaults(handler=cmd_budget_show)
    for command in (bset, bshow):
        command.add_argument(
            "--tag", metavar="KEY=VALUE", help="the budget of one value of a tag key"
        )
        command.add_argument("--user", metavar="USER", help="the budget of one user")
    return parser
