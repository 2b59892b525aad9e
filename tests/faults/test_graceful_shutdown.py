"""SIGTERM under load: the receiver stops accepting, the requests it was already serving
finish (their clients get 200 and the rows are committed), and it exits with status 0.

So that "in flight" means more than a few milliseconds, the signal comes while the writes
are held up by a lock on the rollup table (a slow commit), released 1.5 s later."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults.load import HttpLoad
from tests.faults.serving import LockHolder, create_tenants, start_serve, stored_spans

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

# A request sent this long before the signal has reached its handler (headers parsed, body
# being read or written); one sent later may race the listener closing.
IN_FLIGHT_MARGIN = 0.05


def test_sigterm_under_load_finishes_in_flight_requests_then_exits_0(
    database_url: str, tmp_path: Path
) -> None:
    (tenant,) = create_tenants(database_url, "drained", rate_limit_per_min=10**7)
    served = start_serve(database_url, tmp_path / "logs")
    try:
        load = HttpLoad(served.url, tenant.ingest_key, clients=4, batch=2000, retry=False).start()
        deadline = time.monotonic() + 30
        while len(load.acknowledged) < 8000 and time.monotonic() < deadline:
            time.sleep(0.05)
        holder = LockHolder(database_url, "usage_rollup_hourly", 2.0)
        holder.start()
        assert holder.locked.wait(10)
        time.sleep(0.5)
        sigterm_at = time.monotonic()
        served.signal(signal.SIGTERM)
        status = served.process.wait(timeout=60)
        exited_after = time.monotonic() - sigterm_at
        load.stop(drain_timeout=5)
    finally:
        served.kill()
    log = served.stderr_text()

    in_flight = [
        a for a in load.attempts if a.started <= sigterm_at - IN_FLIGHT_MARGIN < a.finished
    ]
    after = [a for a in load.attempts if a.started > sigterm_at]
    last_finished = max((a.finished - sigterm_at for a in in_flight), default=0.0)
    stored = stored_spans(database_url, tenant.id)
    lost = load.acknowledged - stored.keys()
    print(
        f"\n[faults] SIGTERM under 4 clients x 2000-span batches: exit status {status} "
        f"{exited_after:.2f}s after the signal; requests in flight at the signal "
        f"{[a.status for a in in_flight]} (the last finished {last_finished:.2f}s after it); "
        f"requests sent after it "
        f"{sorted({str(a.status) for a in after})} x{len(after)}; acknowledged spans "
        f"{len(load.acknowledged)}, stored {len(stored)}, lost {len(lost)}"
    )
    assert status == 0
    assert in_flight, "no request was in flight when the signal came"
    assert all(a.status == 200 for a in in_flight)
    assert last_finished > 1.0  # they really waited for their commits, then got their 200
    assert not lost
    assert all(n == 1 for n in stored.values())
    assert all(a.status in (None, 503) for a in after)  # refused or not connected, never lost
    assert "shutting down: finishing in-flight requests" in log and '"msg": "stopped"' in log
    assert '"status": 500' not in log
