"""The commands that manage organizations, keys, prices, budgets and stored data."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from aethermind.cli.common import (
    CliError,
    cell_text,
    emit,
    find_organization,
    key_doc,
    open_pool,
    organization_doc,
    parse_money,
    parse_time,
    print_table,
    stderr_console,
    tag_pair,
)


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
    document = {"organization": organization_doc(org), "key": key_doc(key, full_key)}

    def human() -> None:
        print(f"organization {org.slug} ({org.id}), plan {org.plan}")
        print(f"ingest key (shown once): {full_key}")

    emit(args, document, human)


async def cmd_org_list(args: argparse.Namespace) -> None:
    from aethermind.storage.tenants import list_organizations

    async with open_pool(args) as pool:
        orgs = await list_organizations(pool)
    docs = [organization_doc(o) for o in orgs]
    emit(args, {"organizations": docs}, lambda: print_table(docs, ["slug", "name", "plan", "id"]))


async def cmd_org_tags(args: argparse.Namespace) -> None:
    from aethermind.storage.tenants import get_tag_keys, set_tag_keys

    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        if args.show:
            keys = await get_tag_keys(pool, org.id)
        else:
            wanted = [k.strip() for k in args.set.split(",") if k.strip()]
            try:
                keys = await set_tag_keys(pool, org.id, wanted)
            except ValueError as exc:
                raise CliError(str(exc)) from exc
    emit(
        args,
        {"organization": org.slug, "keys": list(keys)},
        lambda: print(f"{org.slug} tag keys: {', '.join(keys) or '(none)'}"),
    )


async def cmd_org_cost_basis(args: argparse.Namespace) -> None:
    from aethermind.storage.cost_basis import get_cost_basis, set_cost_basis

    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        if args.show:
            basis = await get_cost_basis(pool, org.id)
        else:
            try:
                basis = await set_cost_basis(pool, org.id, args.set)
            except ValueError as exc:
                raise CliError(str(exc)) from exc
    emit(
        args,
        {"organization": org.slug, "cost_basis": basis},
        lambda: print(f"{org.slug} counts {basis} costs"),
    )


async def cmd_key_create(args: argparse.Namespace) -> None:
    from aethermind.storage.tenants import create_key

    scopes = args.scope or ["ingest"]
    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        try:
            key, full_key = await create_key(pool, org.id, scopes, name=args.name)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    emit(
        args,
        key_doc(key, full_key),
        lambda: print(f"key {key.id} scopes {','.join(key.scopes)} (shown once): {full_key}"),
    )


async def cmd_key_list(args: argparse.Namespace) -> None:
    from aethermind.storage.tenants import list_keys

    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        keys = await list_keys(pool, org.id)
    docs = [key_doc(k) for k in keys]
    emit(
        args,
        {"keys": docs},
        lambda: print_table(
            docs, ["id", "public_id", "name", "scopes", "created_at", "revoked_at"]
        ),
    )


async def cmd_key_revoke(args: argparse.Namespace) -> None:
    from aethermind.storage.tenants import revoke_key

    async with open_pool(args) as pool:
        key = await revoke_key(pool, args.key_id)
    if key is None:
        raise CliError(f"no key with id {args.key_id!r}")
    emit(args, key_doc(key), lambda: print(f"key {key.id} revoked at {key.revoked_at}"))


async def cmd_reprice(args: argparse.Namespace) -> None:
    from rich.progress import Progress

    from aethermind.semconv import UsageRecord, default_price_book
    from aethermind.storage.prices import load_price_overrides
    from aethermind.storage.reprice import reprice

    start = parse_time(args.from_, "--from") or datetime(1970, 1, 1, tzinfo=UTC)
    end = parse_time(args.to, "--to") or datetime.now(UTC)
    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        overrides = await load_price_overrides(pool, org.id)
        book = default_price_book()

        def price(record: UsageRecord, at: datetime) -> Any:
            return book.price(record, int(at.timestamp() * 1_000_000) * 1000, overrides=overrides)

        with Progress(console=stderr_console(), disable=args.json) as progress:
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
    from aethermind.storage.prices import PRICE_FIELDS, create_price

    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        money = {
            name: parse_money(getattr(args, name), "--" + name.replace("_", "-"))
            for name in PRICE_FIELDS
        }
        try:
            price = await create_price(
                pool,
                org.id,
                args.model,
                input_per_mtok=money["input_per_mtok"],
                output_per_mtok=money["output_per_mtok"],
                cache_read_per_mtok=money["cache_read_per_mtok"],
                cache_write_per_mtok=money["cache_write_per_mtok"],
                valid_from=parse_time(args.from_, "--from"),
                service_tier=args.service_tier,
            )
        except ValueError as exc:
            message = str(exc).replace("model_pattern", "--model")
            raise CliError(message.replace("service_tier", "--service-tier")) from exc
    document = price.as_dict()
    emit(args, document, lambda: print(f"price {price.id} for {price.model_pattern} set"))


async def cmd_price_list(args: argparse.Namespace) -> None:
    from aethermind.storage.prices import list_prices

    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        prices = await list_prices(pool, org.id)
    docs = [p.as_dict() for p in prices]
    emit(
        args,
        {"prices": docs},
        lambda: print_table(docs, ["id", "model_pattern", "input_per_mtok", "output_per_mtok",
                              "cache_read_per_mtok", "valid_from"]),
    )  # fmt: skip


async def cmd_price_delete(args: argparse.Namespace) -> None:
    from aethermind.storage.prices import delete_price

    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        deleted = await delete_price(pool, org.id, args.price_id)
    if not deleted:
        raise CliError(f"no price {args.price_id!r} in organization {args.org!r}")
    emit(args, {"deleted": args.price_id}, lambda: print(f"price {args.price_id} deleted"))


async def cmd_prices_status(args: argparse.Namespace) -> None:
    from datetime import timedelta

    from aethermind.semconv.price_data import snapshot_info
    from aethermind.storage.prices import overrides_in_force, unpriced_models

    if not 1 <= args.days <= 3660:
        raise CliError("--days must be between 1 and 3660")
    info = snapshot_info()
    since = datetime.now(UTC) - timedelta(days=args.days)
    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org) if args.org else None
        org_id = org.id if org is not None else None
        unpriced = await unpriced_models(pool, since, organization_id=org_id)
        overrides = await overrides_in_force(pool, organization_id=org_id)
    age = info.age_seconds()
    unpriced_rows = [
        {"organization": u.organization, "provider": u.provider, "model": u.model,
         "calls": u.calls, "last_seen": u.last_seen}
        for u in unpriced
    ]  # fmt: skip
    override_rows = [{"organization": slug, **price.as_dict()} for slug, price in overrides]
    document: dict[str, Any] = {
        "genai_prices": {
            "version": info.package_version,
            "auto_updated": info.auto_updated,
            "newest_price_change": info.newest_change,
            "age_days": None if age is None else round(age / 86_400, 1),
            "scheduled_price_changes": info.scheduled_changes,
        },
        "unpriced_since": since,
        "unpriced": unpriced_rows,
        "overrides": override_rows,
    }

    def human() -> None:
        prices = document["genai_prices"]
        print(
            f"genai-prices {prices['version']} ({'updated' if info.auto_updated else 'bundled'}"
            f" data): newest price change {info.newest_change or 'unknown'}"
            f" ({prices['age_days']} days ago), {info.scheduled_changes} scheduled"
        )
        print(f"calls without a price in the last {args.days} days: {len(unpriced)} model(s)")
        if unpriced:
            columns = ["organization", "provider", "model", "calls", "last_seen"]
            print_table(unpriced_rows, columns)
        print(f"price overrides in force: {len(overrides)}")
        if overrides:
            columns = ["organization", "model_pattern", "service_tier", "input_per_mtok",
                       "output_per_mtok", "valid_from"]  # fmt: skip
            print_table(override_rows, columns)

    emit(args, document, human)


async def cmd_budget_set(args: argparse.Namespace) -> None:
    from aethermind.storage.budgets import (
        budget_report,
        parse_thresholds,
        set_budget,
        validate_webhook_url,
    )

    limit = parse_money(args.monthly_usd, "--monthly-usd")
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
    scope = _budget_scope(args)
    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        try:
            await set_budget(
                pool, org.id, monthly_limit_usd=limit, thresholds=thresholds,
                webhook_url=webhook_url, scope=scope,
            )  # fmt: skip
        except ValueError as exc:
            raise CliError(f"organization {org.slug!r}: {exc}") from exc
        report = await budget_report(pool, org.id, org.slug, scope=scope)
    assert report is not None  # set just now, in this organization
    budget = report.budget
    whose = org.slug if not scope.dimension else f"{scope.label} in {org.slug}"
    emit(
        args,
        report.as_dict(),
        lambda: print(
            f"budget for {whose}: {budget.monthly_limit_usd} USD a month, alerts at "
            f"{','.join(str(t) for t in budget.thresholds)}% to {budget.webhook_host}"
        ),
    )


def _budget_scope(args: argparse.Namespace) -> Any:
    """The budget's scope from ``--tag K=V`` or ``--user U`` (the organization's without)."""
    from aethermind.storage.budgets import ORGANIZATION, BudgetScope

    if args.tag is not None and args.user is not None:
        raise CliError("--tag and --user: a budget is for one scope; give one of them")
    try:
        if args.tag is not None:
            return BudgetScope(*tag_pair(args.tag))
        if args.user is not None:
            return BudgetScope("user", args.user)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    return ORGANIZATION


async def cmd_budget_show(args: argparse.Namespace) -> None:
    from aethermind.storage.budgets import budget_report

    scope = _budget_scope(args)
    async with open_pool(args) as pool:
        org = await find_organization(pool, args.org)
        report = await budget_report(pool, org.id, org.slug, scope=scope)
    if report is None:
        whose = "" if not scope.dimension else f" for {scope.label}"
        raise CliError(
            f"organization {args.org!r} has no budget{whose} (see `aethermind budget set`)"
        )
    document = report.as_dict()

    def human() -> None:
        spent = cell_text(document["month_to_date_usd"])
        limit = cell_text(report.budget.monthly_limit_usd)
        percent = cell_text(document["percent_used"])
        print_table(
            document["thresholds"],
            ["threshold", "crossed", "status", "attempts", "delivered_at", "last_error"],
            title=f"{org.slug}{'' if not scope.dimension else ' ' + scope.label}"
            f" {document['month']}: {spent} of {limit} USD ({percent}%),"
            f" webhook {report.budget.webhook_host}",
        )

    emit(args, document, human)
