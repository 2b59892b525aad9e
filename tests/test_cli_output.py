"""What the CLI shows people: the stats table fits 80 columns and rounds for reading, every
option has help, and errors name the flag the user typed."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console

from aethermind.cli import build_parser
from aethermind.cli.stats import human_cost, human_count, human_ms, stats_table


def _row(model: str, calls: int, cost: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": model,
        "calls": calls,
        "errors": extra.get("errors", 0),
        "input_tokens": calls * 1234,
        "output_tokens": calls * 321,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "total_tokens": calls * 1555,
        "cost_usd": None if cost is None else Decimal(cost),
        "unpriced_calls": extra.get("unpriced", 0),
        "latency_ms": {"p50": 50.216063749999996, "p95": 1234.5678, "p99": 2000.0},
    }


def _render(table: Any, width: int = 80) -> list[str]:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(table)
    return console.export_text().splitlines()


def test_people_read_costs_rounded_to_four_significant_digits_or_cents() -> None:
    assert human_cost(Decimal("1.2836408")) == "$1.284"
    assert human_cost(Decimal("0.009000")) == "$0.009"
    assert human_cost(Decimal("0.0100000")) == "$0.01"
    assert human_cost(Decimal("1234.5678")) == "$1,234.57"
    assert human_cost(Decimal("0")) == "$0"
    assert human_cost(None) == "-"
    assert human_ms(50.216063749999996) == "50 ms"
    assert human_ms(4.25) == "4.2 ms"
    assert human_ms(1234.5) == "1.23 s"
    assert human_count(9999) == "9,999"
    assert human_count(12_345) == "12.3k"
    assert human_count(4_560_000) == "4.56M"


def test_the_stats_table_fits_80_columns_with_readable_headers_and_a_totals_row() -> None:
    rows = [
        _row("gpt-4o-mini-2024-07-18-with-a-very-long-fine-tune-suffix", 1200, "1.2836408"),
        _row("claude-sonnet-4-5-20250929", 30, "0.009000", errors=2),
        _row("house-model", 7, None, unpriced=7),
    ]
    lines = _render(stats_table(rows, ["provider", "model"], None, 80, "acme: a to b UTC"))
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= 80, text
    header = next(line for line in lines if "Calls" in line)
    assert "Provider" in header and "Model" in header and "Cost" in header
    assert "_" not in header  # no snake_case headers
    assert "$1.284" in text and "$0.009" in text
    assert "50.216" not in text and "0.0090000" not in text
    total = next(line for line in lines if line.startswith("Total"))
    assert "1,237" in total and "$1.293" in total and "7" in total  # calls, cost, unpriced


def test_a_narrow_terminal_drops_the_least_needed_columns_not_the_cost() -> None:
    rows = [_row("gpt-4o", 10, "0.5"), _row("gpt-4o-mini", 5, "0.25")]
    lines = _render(stats_table(rows, ["provider", "model"], None, 50, "t"), width=50)
    assert max(len(line) for line in lines) <= 50
    header = next(line for line in lines if "Calls" in line)
    assert "Cost" in header and "p95" not in header


def test_time_buckets_print_as_dates_for_the_granularity() -> None:
    row = {**_row("gpt-4o", 1, "1"), "bucket": datetime(2026, 11, 30, tzinfo=UTC)}
    lines = _render(stats_table([row], ["model", "bucket"], "day", 80, "t"))
    assert any("2026-11-30" in line and "00:00:00" not in line for line in lines)


def _options(parser: argparse.ArgumentParser, path: str = "aethermind") -> list[tuple[str, Any]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _options(child, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            found.append((f"{path} {'/'.join(action.option_strings) or action.dest}", action))
    return found


def test_every_option_of_every_command_has_a_help_line_and_no_internal_metavar() -> None:
    options = _options(build_parser())
    missing = [name for name, action in options if not action.help]
    assert not missing
    assert not [n for n, a in options if a.metavar and a.metavar.endswith("_")]
    names = [name for name, _ in options]
    assert "aethermind stats --operation" in names and "aethermind stats --environment" in names


def test_a_bad_option_value_is_reported_with_the_flag_name() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aethermind.cli", "stats", "--org", "x", "--group-by", "colour"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--group-by" in result.stderr and "group_by" not in result.stderr
