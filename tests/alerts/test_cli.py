"""``aethermind budget set/show``: the JSON documents scripts rely on, and clear refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from aethermind.cli import CliError, build_parser
from aethermind.storage.tenants import Organization
from tests.alerts.conftest import SECRET_PATH, spend

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

HOOK = f"https://hooks.slack.com{SECRET_PATH}"


@pytest.fixture
def cli(database_url: str, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run one command in this process (fast) and return its one JSON document."""

    async def run(*argv: str) -> Any:
        args = build_parser().parse_args([*argv, "--database-url", database_url, "--json"])
        await args.handler(args)
        out = capsys.readouterr().out
        return json.loads(out)

    return run


async def test_budget_set_prints_the_budget_and_where_the_month_stands(
    cli: Any, acme: Organization
) -> None:
    document = await cli(
        "budget", "set", "--org", "acme", "--monthly-usd", "50", "--webhook-url", HOOK
    )
    month = datetime.now(UTC).strftime("%Y-%m")
    assert document == {
        "organization_id": str(acme.id),
        "organization": "acme",
        "budget": {
            "organization_id": str(acme.id),
            "scope": None,
            "monthly_limit_usd": "50",
            "thresholds": [50, 80, 100],
            "webhook_host": "hooks.slack.com",
            "webhook_url": "https://hooks.slack.com/***",
            "created_at": document["budget"]["created_at"],
            "updated_at": document["budget"]["updated_at"],
        },
        "month": month,
        "month_to_date_usd": "0",
        "percent_used": "0",  # exact decimal strings, normalized
        "calls": 0,
        "unpriced_calls": 0,
        "thresholds": [
            {
                "threshold": t,
                "crossed": False,
                "status": None,
                "attempts": 0,
                "last_error": None,
                "claimed_at": None,
                "delivered_at": None,
                "next_attempt_at": None,
            }
            for t in (50, 80, 100)
        ],
    }
    assert document["budget"]["created_at"].endswith("Z")


async def test_budget_show_reports_month_to_date_cost_and_percent(
    cli: Any, pool: Any, acme: Organization
) -> None:
    await cli(
        "budget", "set", "--org", "acme", "--monthly-usd", "40", "--thresholds", "25,75",
        "--webhook-url", HOOK,
    )  # fmt: skip
    await spend(pool, acme.id, "12.5", datetime.now(UTC))
    await cli("budget", "set", "--org", "acme", "--monthly-usd", "20")  # keeps the rest

    shown = await cli("budget", "show", "--org", "acme")

    assert shown["budget"]["monthly_limit_usd"] == "20"
    assert shown["budget"]["webhook_host"] == "hooks.slack.com"
    assert (shown["month_to_date_usd"], shown["percent_used"], shown["calls"]) == (
        "12.5",
        "62.5",
        1,
    )
    assert [(t["threshold"], t["crossed"], t["status"]) for t in shown["thresholds"]] == [
        (25, True, None),
        (75, False, None),
    ]
    assert "s3cr3t" not in json.dumps(shown)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--monthly-usd", "0", "--webhook-url", HOOK], "--monthly-usd must be a positive"),
        (["--monthly-usd", "$50", "--webhook-url", HOOK], "--monthly-usd must be a decimal"),
        (["--monthly-usd", "50", "--thresholds", "50,x", "--webhook-url", HOOK], "--thresholds"),
        (["--monthly-usd", "50", "--webhook-url", "ftp://example.com/s3cr3t"], "--webhook-url"),
        (["--monthly-usd", "50"], "needs a webhook URL"),
    ],
)
async def test_budget_set_refuses_bad_input_clearly(
    cli: Any, acme: Organization, argv: list[str], message: str
) -> None:
    with pytest.raises(CliError, match=message) as raised:
        await cli("budget", "set", "--org", "acme", *argv)
    assert "s3cr3t" not in str(raised.value)


async def test_budget_show_without_a_budget_or_organization_is_an_error(
    cli: Any, acme: Organization
) -> None:
    with pytest.raises(CliError, match="has no budget"):
        await cli("budget", "show", "--org", "acme")
    with pytest.raises(CliError, match="no organization with slug 'nope'"):
        await cli("budget", "show", "--org", "nope")


def test_budget_commands_as_a_process_print_one_json_document(database_url: str) -> None:
    def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aethermind.cli", *argv, "--database-url", database_url,
             "--json"],
            input=stdin, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    assert run("org", "create", "Acme").returncode == 0
    created = run("budget", "set", "--org", "acme", "--monthly-usd", "50", "--webhook-url", HOOK)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["budget"]["thresholds"] == [50, 80, 100]
    assert "s3cr3t" not in created.stdout + created.stderr
    # The URL can come from standard input, so its secret never shows in `ps`.
    from_stdin = run(
        "budget", "set", "--org", "acme", "--monthly-usd", "60", "--webhook-url", "-",
        stdin=HOOK.replace("hooks.slack.com", "hooks.example.com") + "\n",
    )  # fmt: skip
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["budget"]["webhook_host"] == "hooks.example.com"
    empty = run("budget", "set", "--org", "acme", "--monthly-usd", "60", "--webhook-url", "-")
    assert empty.returncode == 2 and "standard input" in json.loads(empty.stdout)["error"]
    refused = run("budget", "set", "--org", "acme", "--monthly-usd", "-5")
    assert refused.returncode == 2
    assert "--monthly-usd" in json.loads(refused.stdout)["error"]


async def test_budgets_of_a_tag_value_and_of_a_user(cli: Any, acme: Organization) -> None:
    await cli("org", "tags", "--org", "acme", "--set", "team")
    document = await cli(
        "budget", "set", "--org", "acme", "--tag", "team=search", "--monthly-usd", "100",
        "--webhook-url", HOOK,
    )  # fmt: skip
    assert document["budget"]["scope"] == {"dimension": "tag.team", "value": "search"}
    document = await cli(
        "budget", "set", "--org", "acme", "--user", "alice", "--monthly-usd", "20",
        "--webhook-url", HOOK,
    )  # fmt: skip
    assert document["budget"]["scope"] == {"dimension": "user", "value": "alice"}
    shown = await cli("budget", "show", "--org", "acme", "--tag", "team=search")
    assert shown["budget"]["monthly_limit_usd"] == "100"
    with pytest.raises(CliError, match="no budget for user=bob"):
        await cli("budget", "show", "--org", "acme", "--user", "bob")
    with pytest.raises(CliError, match="one of them"):
        await cli("budget", "show", "--org", "acme", "--user", "bob", "--tag", "team=x")
    with pytest.raises(CliError, match="not one of the organization's tag keys"):
        await cli(
            "budget", "set", "--org", "acme", "--tag", "feature=chat", "--monthly-usd", "5",
            "--webhook-url", HOOK,
        )  # fmt: skip
