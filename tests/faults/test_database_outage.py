"""PostgreSQL stopped in the middle of sustained load from real OTel exporters, then started
again: every span answered 200 is stored, the spans answered 503 are retried by the
exporters and stored after recovery, and nothing is stored twice.

The database is an embedded PostgreSQL this test owns (never the machine's service, which
other tests share), served by a real `aethermind serve` process.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from aethermind.storage.embedded import EmbeddedPostgres
from tests.faults.load import OtelPipelines
from tests.faults.serving import (
    create_tenants,
    database_steps_bounded,
    rollup_calls,
    serving,
    stored_spans,
    wait_until,
)

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

OUTAGE_SECONDS = 2.5


def test_postgres_stopped_under_otel_exporter_load_loses_and_doubles_nothing(
    tmp_path: Path, reachable_tmp_path: Path
) -> None:
    server = EmbeddedPostgres(reachable_tmp_path / "pg")
    server.start_sync(timeout=120)
    try:
        dsn = server.dsn()
        (tenant,) = create_tenants(dsn, "outage", migrate_first=True, rate_limit_per_min=10**6)
        with serving(dsn, tmp_path / "logs", env=database_steps_bounded(3)) as served:
            load = OtelPipelines(
                f"{served.url}/v1/traces", tenant.ingest_key, count=4, spans_per_second=100
            ).start()
            time.sleep(3)
            acknowledged_before = len(load.ledger.acknowledged)

            down_at = time.monotonic()
            server.stop_sync(timeout=30)
            readyz_down = requests.get(f"{served.url}/readyz", timeout=10).status_code
            time.sleep(OUTAGE_SECONDS)
            server.start_sync(timeout=60)
            up_at = time.monotonic()
            assert wait_until(
                lambda: requests.get(f"{served.url}/readyz", timeout=10).status_code == 200,
                timeout=30,
            )
            outage = time.monotonic() - down_at
            time.sleep(3)
            load.stop_producing()
            load.flush_and_shutdown(timeout=90)
            log = served.stderr_text()
            unavailable = served.metric(
                "aethermind_http_requests_total", route="/v1/traces", status="503"
            )
            assert served.alive()

        ledger = load.ledger
        recovered = ledger.first_after(up_at)
        first_503 = ledger.first_after(down_at, 503)
        stored = stored_spans(dsn, tenant.id)
        lost = ledger.acknowledged - stored.keys()
        duplicates = sum(n - 1 for n in stored.values() if n > 1)
        unexpected = stored.keys() - ledger.sent
        hourly, daily = rollup_calls(dsn, tenant.id)
        print(
            f"\n[faults] postgres outage under 4 OTel BatchSpanProcessor pipelines "
            f"(~400 spans/s, gzip protobuf): database down {outage:.1f}s "
            f"(readyz {readyz_down} while down); produced={load.produced}; {ledger.summary()}; "
            f"acknowledged before the outage={acknowledged_before}; first 503 "
            f"{first_503 or 0:.1f}s after the stop, first 200 {recovered or 0:.1f}s after the "
            f"restart; "
            f"503s answered by the server={unavailable:.0f}; rows stored={sum(stored.values())}; "
            f"lost={len(lost)} duplicates={duplicates} unknown rows={len(unexpected)}; "
            f"rollup calls hourly={hourly} daily={daily}"
        )
        assert readyz_down == 503
        assert ledger.http_statuses[503] > 0, "the outage was never seen by a client"
        assert load.produced == len(ledger.sent), "the SDK queue dropped spans"
        assert not lost, f"{len(lost)} acknowledged spans are missing"
        # The Python exporter makes 6 attempts, Retry-After (2 s) apart: about 10 s.
        warnings = [line for line in log.splitlines() if '"warning"' in line or '"error"' in line]
        assert not ledger.abandoned, (
            f"an exporter gave up on {len(ledger.abandoned)} spans; server warnings: "
            f"{warnings[-10:]}"
        )
        assert stored.keys() == ledger.sent
        assert duplicates == 0 and not unexpected
        assert hourly == daily == len(stored)  # each span counted once in the rollups
    finally:
        server.stop_sync(timeout=60)
