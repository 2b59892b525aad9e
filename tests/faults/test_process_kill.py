"""The receiver killed with SIGKILL under load from real OTel exporters, and started again:
every span it acknowledged is stored (a 200 only follows a commit), the exporters' retries
land the rest, and the retries of batches committed just before the kill store nothing twice.

Runs on the test database (the machine's PostgreSQL when AETHERMIND_TEST_DATABASE_URL is
set): PostgreSQL itself stays up.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults.load import OtelPipelines
from tests.faults.serving import create_tenants, restart, rollup_calls, start_serve, stored_spans

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

KILLS = 2


def test_sigkill_under_load_then_restart_keeps_every_acknowledged_span_once(
    database_url: str, tmp_path: Path
) -> None:
    (tenant,) = create_tenants(database_url, "killed", rate_limit_per_min=10**6)
    served = start_serve(database_url, tmp_path / "logs")
    load = OtelPipelines(
        f"{served.url}/v1/traces", tenant.ingest_key, count=4, spans_per_second=100
    )
    downtime = []
    try:
        load.start()
        for _ in range(KILLS):
            time.sleep(2.5)
            killed_at = time.monotonic()
            served.signal(signal.SIGKILL)
            served.process.wait(timeout=10)
            assert served.process.returncode == -signal.SIGKILL
            served = restart(served)
            downtime.append(time.monotonic() - killed_at)
        time.sleep(2.5)
        load.stop_producing()
        load.flush_and_shutdown(timeout=90)
        assert served.stop() == 0
    finally:
        served.kill()

    ledger = load.ledger
    stored = stored_spans(database_url, tenant.id)
    lost = ledger.acknowledged - stored.keys()
    duplicates = sum(n - 1 for n in stored.values() if n > 1)
    unexpected = stored.keys() - ledger.sent
    hourly, daily = rollup_calls(database_url, tenant.id)
    print(
        f"\n[faults] SIGKILL x{KILLS} under 4 OTel pipelines (~400 spans/s): "
        f"down {', '.join(f'{d:.1f}s' for d in downtime)} until healthy again; "
        f"produced={load.produced}; {ledger.summary()}; rows stored={sum(stored.values())}; "
        f"lost={len(lost)} duplicates={duplicates} unknown rows={len(unexpected)}; "
        f"rollup calls hourly={hourly} daily={daily}"
    )
    assert ledger.connection_errors > 0, "no exporter ever noticed the kills"
    assert load.produced == len(ledger.sent)
    assert not lost, f"{len(lost)} acknowledged spans are missing after SIGKILL"
    assert not ledger.abandoned
    assert stored.keys() == ledger.sent
    assert duplicates == 0 and not unexpected
    assert hourly == daily == len(stored)
