"""The CLI as users run it: a real process, JSON on stdout, logs on stderr."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from aethermind.receiver.openapi import build_document
from tests.plugins.services import free_port, wait_for_port
from tests.receiver.helpers import PROTOBUF, llm_spans, protobuf_body

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

CLI = [sys.executable, "-m", "aethermind.cli"]
NO_GRPC = ["--grpc-port", "0"]  # the default 4317 may be taken on a test machine


def run_cli(*args: str, database_url: str) -> Any:
    result = subprocess.run(
        [*CLI, *args, "--database-url", database_url, "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_org_and_key_commands_print_exactly_one_json_document(database_url: str) -> None:
    created = run_cli("org", "create", "Acme Corp", "--plan", "PRO", database_url=database_url)
    org = created["organization"]
    assert (org["name"], org["slug"], org["plan"]) == ("Acme Corp", "acme-corp", "PRO")
    assert org["rate_limit_per_min"] > 0 and org["retention_days"] > 0
    assert created["key"]["key"].startswith("aether_")
    assert created["key"]["scopes"] == ["ingest"]

    read = run_cli(
        "key",
        "create",
        "--org",
        "acme-corp",
        "--scope",
        "read",
        "--name",
        "dash",
        database_url=database_url,
    )
    assert set(read) >= {"id", "key", "scopes", "organization_id"}
    assert (read["scopes"], read["organization_id"]) == (["read"], org["id"])

    listed = run_cli("key", "list", "--org", "acme-corp", database_url=database_url)["keys"]
    assert {k["id"] for k in listed} == {created["key"]["id"], read["id"]}
    assert all("key" not in k for k in listed)  # the full key is shown only at creation

    revoked = run_cli("key", "revoke", read["id"], database_url=database_url)
    assert revoked["revoked_at"] is not None


def test_errors_are_one_line_and_a_nonzero_status(database_url: str) -> None:
    result = subprocess.run(
        [*CLI, "key", "list", "--org", "nope", "--database-url", database_url, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "nope" in json.loads(result.stdout)["error"]


def test_serve_bootstraps_default_org_ingests_and_stops_cleanly_on_sigterm(
    database_url: str,
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--database-url", database_url, "--port", str(port), *NO_GRPC],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=60)
        assert process.stdout is not None
        banner = [process.stdout.readline()]
        while not banner[-1].lstrip().startswith("API:"):  # the guide's last line
            banner.append(process.stdout.readline())
        labelled = {
            line.split(":", 1)[0].strip(): line.split()[-1] for line in banner if "key:" in line
        }
        ingest_key, read_key = labelled["ingest key"], labelled["read key"]
        admin_key = labelled["admin key"]
        assert all(k.startswith("aether_") for k in (ingest_key, read_key, admin_key))
        base = f"http://127.0.0.1:{port}"
        # The first run says what to do next, ready to paste.
        guide = "".join(banner)
        assert f"{base}/dashboard" in guide
        assert f"export AETHERMIND_API_KEY={ingest_key}\n" in guide
        assert f"export AETHERMIND_ENDPOINT={base}\n" in guide
        assert "from aethermind import init_aethermind; init_aethermind()" in guide
        admin = requests.get(
            f"{base}/v1/keys", headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
        )
        assert admin.status_code == 200
        response = requests.post(
            f"{base}/v1/traces", data=protobuf_body(llm_spans(5)), timeout=30,
            headers={"Content-Type": PROTOBUF, "Authorization": f"Bearer {ingest_key}"},
        )  # fmt: skip
        assert response.status_code == 200
        stats = requests.get(
            f"{base}/v1/aggregates", headers={"Authorization": f"Bearer {read_key}"}, timeout=30
        ).json()
        assert sum(r["calls"] for r in stats["rows"]) == 5
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        stderr = process.stderr.read() if process.stderr else ""
        assert '"msg": "stopped"' in stderr
        assert ingest_key not in stderr and read_key not in stderr  # keys never in logs
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # A second start on the same database creates nothing and prints no keys.
    port = free_port()
    again = subprocess.Popen(
        [*CLI, "serve", "--database-url", database_url, "--port", str(port), *NO_GRPC],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=60)
        time.sleep(0.2)
        again.send_signal(signal.SIGINT)
        out, _ = again.communicate(timeout=60)
        assert again.returncode == 0
        assert "aether_" not in out
    finally:
        if again.poll() is None:
            again.kill()


def test_stats_matches_the_api_rows(database_url: str) -> None:
    created = run_cli("org", "create", "Stats Org", database_url=database_url)
    port = free_port()
    read = run_cli(
        "key", "create", "--org", "stats-org", "--scope", "read", database_url=database_url
    )
    process = subprocess.Popen(
        [*CLI, "serve", "--database-url", database_url, "--port", str(port), *NO_GRPC],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        headers = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {created['key']['key']}"}
        assert requests.post(
            f"{base}/v1/traces", data=protobuf_body(llm_spans(7)), headers=headers, timeout=30
        ).ok
        api = requests.get(
            f"{base}/v1/aggregates", params={"group_by": "provider,model"},
            headers={"Authorization": f"Bearer {read['key']}"}, timeout=30,
        ).json()  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=60)
    cli = run_cli(
        "stats", "--org", "stats-org", "--group-by", "provider,model", database_url=database_url
    )
    assert cli["rows"] == api["rows"]
    assert cli["rows"][0]["calls"] == 7
    # Exact decimal strings, normalized: no float artefacts, no trailing zeros.
    cost = cli["rows"][0]["cost_usd"]
    assert cost == format(Decimal(cost).normalize(), "f") and "e" not in cost.lower()
    assert all(round(value, 3) == value for value in cli["rows"][0]["latency_ms"].values() if value)

    # For people: an 80-column table, with the command line's own column names.
    table = subprocess.run(
        [*CLI, "stats", "--org", "stats-org", "--database-url", database_url],
        capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "COLUMNS": "80"},
    ).stdout  # fmt: skip
    lines = table.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, table
    assert "Calls" in table and "Cost" in table and "cost_usd" not in table
    assert " to " in lines[0] and lines[0].rstrip().endswith("UTC")

    # Who spent it: these spans name no user.
    top = run_cli(
        "stats", "--org", "stats-org", "--group-by", "user", "--top", "1", database_url=database_url
    )
    assert [(r["user"], r["calls"]) for r in top["rows"]] == [(None, 7)]
    nobody = run_cli("stats", "--org", "stats-org", "--user", "nobody", database_url=database_url)
    assert nobody["rows"] == []

    # The organization's own tags.
    tags = run_cli("org", "tags", "--org", "stats-org", "--set", "team,customer",
                   database_url=database_url)  # fmt: skip
    assert tags == {"organization": "stats-org", "keys": ["team", "customer"]}
    shown = run_cli("org", "tags", "--org", "stats-org", "--show", database_url=database_url)
    assert shown["keys"] == ["team", "customer"]
    by_team = run_cli(
        "stats", "--org", "stats-org", "--group-by", "tag.team", database_url=database_url
    )
    # These spans were stored before the keys were named: they are in none of a tag's rows.
    assert by_team["rows"] == []
    searched = run_cli("stats", "--org", "stats-org", "--tag", "team=search",
                       database_url=database_url)  # fmt: skip
    assert searched["rows"] == []


def test_serve_with_two_workers_shares_one_port_and_stops_them_all(database_url: str) -> None:
    created = run_cli("org", "create", "Workers", database_url=database_url)
    port, grpc_port = free_port(), free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--database-url", database_url, "--port", str(port), "--workers", "2",
         "--grpc-port", str(grpc_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=60)
        wait_for_port(grpc_port, timeout=60)
        headers = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {created['key']['key']}"}
        for _ in range(6):  # new connections each time: whichever worker is idle accepts
            response = requests.post(
                f"http://127.0.0.1:{port}/v1/traces", data=protobuf_body(llm_spans(3)),
                headers={**headers, "Connection": "close"}, timeout=30,
            )  # fmt: skip
            assert response.status_code == 200
        # OTLP/gRPC on its own port, both workers listening on it (SO_REUSEPORT).
        for _ in range(4):
            exporter = GrpcSpanExporter(
                endpoint=f"127.0.0.1:{grpc_port}", insecure=True, timeout=30,
                headers=(("authorization", f"Bearer {created['key']['key']}"),),
            )  # fmt: skip
            assert exporter.export(llm_spans(2)) is SpanExportResult.SUCCESS
            exporter.shutdown()
        workers = [p for p in _children(process.pid)]
        assert len(workers) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert not any(_alive(pid) for pid in workers)
        # Nobody holds the shared listening socket any more: connections are refused, not
        # left hanging in a backlog.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _children(pid: int) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(pid).children()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_price_override_then_reprice_prices_a_private_model(database_url: str) -> None:
    import asyncio
    from datetime import UTC, datetime
    from decimal import Decimal

    from aethermind.semconv import UNKNOWN_COST, UsageRecord
    from aethermind.storage.config import DatabaseConfig
    from aethermind.storage.database import Database
    from aethermind.storage.span_row import row_from_usage
    from aethermind.storage.writer import write_rows

    org = run_cli("org", "create", "Private", database_url=database_url)["organization"]
    started = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)

    async def store_unpriced_spans() -> None:
        rows = [
            row_from_usage(
                UsageRecord(
                    provider="vllm",
                    request_model="house-model-7",
                    input_tokens=1_000_000,
                    output_tokens=500_000,
                    operation="chat",
                ),
                UNKNOWN_COST,
                trace_id=f"{i + 1:032x}",
                span_id=f"{i + 1:016x}",
                name="chat house-model-7",
                timestamp=started,
            )
            for i in range(4)
        ]
        async with Database(DatabaseConfig(database_url=database_url)) as pool:
            await write_rows(pool, org["id"], rows)

    asyncio.run(store_unpriced_spans())
    window = ("--from", "2026-11-01", "--to", "2026-12-01")
    before = run_cli(
        "stats", "--org", "private", "--group-by", "model", *window, database_url=database_url
    )
    assert [(r["model"], r["cost_usd"], r["unpriced_calls"]) for r in before["rows"]] == [
        ("house-model-7", None, 4)
    ]
    # What the same tokens would cost on gpt-4o: 4 x (1M x $2.50 + 0.5M x $10.00).
    what_if = run_cli(
        "stats", "--org", "private", "--what-if", "gpt-4o", *window, database_url=database_url
    )
    assert Decimal(what_if["rows"][0]["what_if_cost_usd"]) == Decimal(30)
    status = run_cli("prices", "status", "--days", "3660", database_url=database_url)
    assert status["genai_prices"]["version"] and status["genai_prices"]["auto_updated"] is False
    assert [(u["organization"], u["model"], u["calls"]) for u in status["unpriced"]] == [
        ("private", "house-model-7", 4)
    ]

    price = run_cli(
        "price", "set", "--org", "private", "--model", "house-model-*", "--input-per-mtok", "0.40",
        "--output-per-mtok", "1.20", "--from", "2026-01-01", database_url=database_url,
    )  # fmt: skip
    assert price["model_pattern"] == "house-model-*"
    # The same fields as the API's Price schema.
    schema = build_document()["components"]["schemas"]["Price"]
    assert set(price) == set(schema["properties"])
    assert [
        p["id"]
        for p in run_cli("price", "list", "--org", "private", database_url=database_url)["prices"]
    ] == [price["id"]]
    status = run_cli("prices", "status", "--org", "private", database_url=database_url)
    assert [o["model_pattern"] for o in status["overrides"]] == ["house-model-*"]

    repriced = run_cli("reprice", "--org", "private", *window, database_url=database_url)
    assert (repriced["examined"], repriced["changed"]) == (4, 4)
    after = run_cli(
        "stats", "--org", "private", "--group-by", "model", *window, database_url=database_url
    )
    # 4 calls x (1 MTok x $0.40 + 0.5 MTok x $1.20) = $4.00
    (row,) = after["rows"]
    assert Decimal(row["cost_usd"]) == Decimal("4.00")
    assert after["rows"][0]["unpriced_calls"] == 0

    run_cli("price", "delete", price["id"], "--org", "private", database_url=database_url)
    assert run_cli("price", "list", "--org", "private", database_url=database_url)["prices"] == []
