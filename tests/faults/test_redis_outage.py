"""Redis stopped while `aethermind serve --redis-url` rate-limits through it: ingestion
goes on under the in-process limit, `/metrics` says so, the local limit still refuses an
organization over its allowance, and the server returns to Redis by itself."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from aethermind.receiver.ratelimit import REDIS_RETRY_SECONDS
from tests.faults.load import PROTOBUF, genai_request
from tests.faults.serving import create_tenants, serving, stored_spans, wait_until
from tests.plugins.services import RedisServer

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

FALLBACK = "aethermind_rate_limit_local_fallback"
LIMIT = 3000


def test_redis_stopped_under_load_falls_back_to_the_local_limit_and_comes_back(
    database_url: str, private_redis: RedisServer, tmp_path: Path
) -> None:
    (tenant,) = create_tenants(database_url, "limited", rate_limit_per_min=LIMIT)
    headers = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {tenant.ingest_key}"}
    acknowledged: set[tuple[str, str]] = set()
    statuses: dict[str, list[int]] = {"redis up": [], "redis down": [], "redis back": []}

    with serving(database_url, tmp_path / "logs", args=["--redis-url", private_redis.url]) as (
        served
    ):
        session = requests.Session()

        def post(phase: str, spans: int) -> requests.Response:
            body, keys = genai_request(spans)
            response = session.post(f"{served.url}/v1/traces", data=body, headers=headers)
            statuses[phase].append(response.status_code)
            if response.status_code == 200:
                acknowledged.update(keys)
            return response

        for _ in range(20):
            post("redis up", 10)
        assert served.metric(FALLBACK) == 0

        private_redis.stop()
        down_at = time.monotonic()
        for _ in range(20):
            post("redis down", 10)
        assert served.metric(FALLBACK) == 1
        # The in-process bucket starts full (it never saw the spans counted in Redis) and
        # still refuses what is over the organization's allowance: most of it spent, a
        # batch bigger than what is left (refill is LIMIT / 60 a second) is refused.
        assert post("redis down", LIMIT - 500).status_code == 200
        refused = post("redis down", 1000)
        assert refused.status_code == 429
        assert refused.headers["X-RateLimit-Limit"] == str(LIMIT)
        assert int(refused.headers["Retry-After"]) >= 1
        statuses["redis down"].pop()  # the deliberate 429 is not part of the steady load

        private_redis.start()
        back_at = time.monotonic()
        assert wait_until(
            lambda: post("redis back", 5).status_code == 200 and served.metric(FALLBACK) == 0,
            timeout=REDIS_RETRY_SECONDS + 5,
            interval=0.25,
        )
        returned_after = time.monotonic() - back_at
        outage = back_at - down_at
        log = served.stderr_text()

    stored = stored_spans(database_url, tenant.id)
    print(
        f"\n[faults] redis stopped for {outage:.1f}s under steady ingest: statuses "
        + "; ".join(f"{phase}: {sorted(set(s))} x{len(s)}" for phase, s in statuses.items())
        + f"; {LIMIT - 500}-span batch then a 1000-span one while down: 200 then 429; "
        f"back on Redis {returned_after:.1f}s after it "
        f"restarted; acknowledged spans={len(acknowledged)} stored={len(stored)} "
        f"lost={len(acknowledged - stored.keys())}"
    )
    assert all(s == 200 for phase in statuses.values() for s in phase)
    assert "Redis unreachable" in log and "Redis reachable again" in log
    assert acknowledged <= stored.keys()
    assert all(n == 1 for n in stored.values())
