"""Does a hostile tenant hurt a well-behaved one? Two organizations on one `aethermind serve
--workers 2` (embedded PostgreSQL, trusted proxy 127.0.0.1):

- the good tenant sends half of its saturating load (real OTLP/protobuf, 512-span requests)
  throughout; its acknowledged spans/s and request p99 are taken alone and under attack;
- the hostile tenant runs one attack at a time, from its own process, in every other
  5-second window, at its own rate limit (PRO plan: 60,000 spans a minute): spans in far
  months, the costliest price-override patterns allowed, unique 8 KiB model names, bad keys
  through the trusted proxy, and spans that try to teach the normalizer another way of
  counting under the good tenant's scope. Two controls run the same way: ordinary spans at
  the same rate from the hostile tenant (a polite neighbour) and from the good tenant itself
  (just more load). Good requests sent while the attack was on are
  compared with those sent while it was off, seconds apart, so the run's slow drift (the
  database grows) does not count against the attack.

Printed per attack: the good tenant's committed spans/s and p99 as ratios of phase 1, the
server's RSS at the start and end (and per minute), the number of partitions, and whether any
of the good tenant's stored numbers differ from what its spans said (poisoning).

Targets (issue "3 of 7", the second round): throughput >= 0.8 of phase 1 and p99 <= 2x for every
attack, RSS growth under 50 MiB a minute, partitions bounded by the window, numbers exact.
The controls are held to none of them: they show how much the same extra load moves the
good tenant's figures with no attack in it.

    python benchmarks/bench_noisy_neighbor.py [--seconds 20] [--attack-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import asyncpg
import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

sys.path.insert(0, str(Path(__file__).parent))
from bench_receiver import CLI, SPANS, free_port, wait_ready
from loadgen import PayloadSupply, _kv, build_payloads, drive

from aethermind.storage.embedded import EmbeddedPostgres

GOOD_SCOPE = "bench"  # loadgen's scope: the one the poisoning attack aims at
HOSTILE_SPANS_PER_SECOND = 60_000 / 60  # the PRO plan's rate limit
BAD_KEY_REQUESTS_PER_SECOND = 50  # unauthenticated: no organization's limit applies
MONTH_NS = 31 * 86_400 * 10**9


def cli_json(*args: str) -> dict[str, object]:
    out = subprocess.run([*CLI, *args, "--json"], check=True, capture_output=True, text=True)
    document: dict[str, object] = json.loads(out.stdout)
    return document


def quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return float("nan")
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1]


def request_of(spans: list[Span], *, scope: str = "hostile-app") -> bytes:
    resource = Resource(attributes=[_kv("service.name", "hostile")])
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=resource,
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name=scope), spans=spans)],
            )
        ]
    )
    return request.SerializeToString()


def chat_span(model: str, start_ns: int, **extra: object) -> Span:
    attributes = [
        _kv("gen_ai.operation.name", "chat"),
        _kv("gen_ai.provider.name", "openai"),
        _kv("gen_ai.request.model", model),
        _kv("gen_ai.usage.input_tokens", 1000),
        _kv("gen_ai.usage.output_tokens", 200),
        *(_kv(k, v) for k, v in extra.items()),
    ]
    return Span(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name=f"chat {model[:40]}",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + 250_000_000,
        attributes=attributes,
    )


def far_month_requests(count: int) -> list[bytes]:
    """Each request's spans start in 512 different months from 1970 to 2262."""
    rng = random.Random(1)
    return [
        request_of([chat_span("gpt-4o", rng.randint(1, 3400) * MONTH_NS) for _ in range(SPANS)])
        for _ in range(count)
    ]


WORST_NAME = "ab" * 128  # 256 characters, the longest name pricing sees
WORST_PATTERNS = [f"*{'ab' * 49}{i:02d}*" for i in range(100)]  # never found: a full scan each


def worst_override_requests(count: int) -> list[bytes]:
    now = time.time_ns()
    return [request_of([chat_span(WORST_NAME, now) for _ in range(SPANS)]) for _ in range(count)]


def unique_name_requests(count: int) -> list[bytes]:
    now = time.time_ns()
    return [
        request_of(
            [chat_span(f"{i:06d}{j:04d}" + "m" * (8 * 1024 - 10), now) for j in range(SPANS)]
        )
        for i in range(count)
    ]


def poisoning_requests(count: int) -> list[bytes]:
    """Spans under the good tenant's scope, spelled the OpenInference way (which counts
    cached tokens outside the input): a normalizer that cached "how does scope `bench`
    count" from these would add cache reads to the good tenant's inputs."""
    now = time.time_ns()
    extra = {
        "openinference.span.kind": "LLM",
        "llm.token_count.prompt": 1000,
        "llm.token_count.prompt_details.cache_read": 600,
        "gen_ai.usage.cache_read.input_tokens": 600,
    }
    return [
        request_of([chat_span("gpt-4o", now, **extra) for _ in range(SPANS)], scope=GOOD_SCOPE)
        for _ in range(count)
    ]


@dataclass
class HostileResult:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0


async def paced(
    url: str,
    headers_for: Callable[[int], dict[str, str]],
    payloads: list[bytes],
    *,
    per_second: float,
    seconds: float,
    concurrency: int = 4,
    on_off_seconds: float | None = None,
) -> HostileResult:
    """``per_second`` requests a second for ``seconds``, cycling ``payloads``; with
    ``on_off_seconds``, only in every other window of that length, starting on."""
    result = HostileResult()
    started = time.perf_counter()
    deadline = started + seconds
    interval = concurrency / per_second
    counter = 0

    async def client(session: aiohttp.ClientSession, offset: float) -> None:
        nonlocal counter
        await asyncio.sleep(offset)
        next_at = time.perf_counter()
        while time.perf_counter() < deadline:
            if on_off_seconds and int((time.perf_counter() - started) / on_off_seconds) % 2:
                window_end = int((time.perf_counter() - started) / on_off_seconds) + 1
                await asyncio.sleep(started + window_end * on_off_seconds - time.perf_counter())
                next_at = time.perf_counter()
                continue
            next_at += interval
            index = counter
            counter += 1
            try:
                async with session.post(
                    url, data=payloads[index % len(payloads)], headers=headers_for(index)
                ) as response:
                    await response.read()
                    result.statuses[response.status] += 1
            except (aiohttp.ClientError, TimeoutError):
                result.errors += 1
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(
            *(client(session, i * interval / concurrency) for i in range(concurrency))
        )
    return result


HOSTILE_RPS = HOSTILE_SPANS_PER_SECOND / SPANS
ON_OFF_SECONDS = 5.0
"""The attack runs in every other window of this length while the good tenant's load runs
throughout; each good request counts as attacked or alone by when it was sent. Compared so
closely, the slow drift of the run (the database grows, checkpoints get heavier) cancels."""


POLITE = "a polite neighbour (control)"
OWN_EXTRA = "the good tenant's own extra spans (control)"
CONTROLS = (OWN_EXTRA, POLITE)
ATTACKS = (
    OWN_EXTRA,
    POLITE,
    "far months",
    "100 worst overrides",
    "unique 8 KiB model names",
    "bad keys via trusted proxy",
    "scope poisoning",
)
Plan = tuple[list[bytes], Callable[[int], dict[str, str]], float, int]


def month_number(moment: datetime) -> int:
    """Months since year 0 of ``moment``'s UTC month, to compare months as integers."""
    return moment.year * 12 + moment.month - 1


def attack_plan(name: str, hostile_key: str, seconds: float) -> Plan:
    """(payloads, headers of request i, requests a second, concurrent clients)."""
    count = max(int(HOSTILE_RPS * seconds) + 2, 4)
    ingest = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {hostile_key}"}
    public_id = hostile_key.split("_")[1]

    def bad_key_headers(i: int) -> dict[str, str]:
        key = f"aether_{public_id}_{'g' * 39}{i:04d}" if i % 2 else f"garbage-{i}"
        return {
            "Content-Type": "application/x-protobuf",
            "Authorization": f"Bearer {key}",
            "X-Forwarded-For": f"198.18.{i // 250 % 250}.{i % 250}",
        }

    if name in (POLITE, OWN_EXTRA):  # ordinary spans at the same rate (the key decides whose)
        return build_payloads(count, SPANS), lambda _: ingest, HOSTILE_RPS, 4
    if name == "far months":
        return far_month_requests(count), lambda _: ingest, HOSTILE_RPS, 4
    if name == "100 worst overrides":
        return worst_override_requests(4), lambda _: ingest, HOSTILE_RPS, 4
    if name == "unique 8 KiB model names":
        return unique_name_requests(count), lambda _: ingest, HOSTILE_RPS, 4
    if name == "bad keys via trusted proxy":
        return [b""], bad_key_headers, BAD_KEY_REQUESTS_PER_SECOND, 8
    if name == "scope poisoning":
        return poisoning_requests(4), lambda _: ingest, HOSTILE_RPS, 4
    raise ValueError(name)


def attack_process(name: str, url: str, hostile_key: str, seconds: float, pipe: Connection) -> None:
    """Run one attack in its own process (so the good tenant's client measures only the
    server): build the payloads, say ready, wait for go, attack, send back a summary."""
    payloads, headers_for, per_second, concurrency = attack_plan(name, hostile_key, seconds)
    pipe.send("ready")
    pipe.recv()
    result = asyncio.run(
        paced(url, headers_for, payloads, per_second=per_second, seconds=seconds,
              concurrency=concurrency, on_off_seconds=ON_OFF_SECONDS)
    )  # fmt: skip
    pipe.send(f"statuses {dict(sorted(result.statuses.items()))}, errors {result.errors}")


@dataclass
class Window:
    spans_per_s: float
    p99_ms: float
    requests: int


@dataclass
class Measured:
    name: str
    attacked: Window
    alone: Window
    rss_start: float
    rss_end: float
    seconds: float
    partitions: int
    mismatched_rows: int
    hostile: str


async def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="aethermind-noisy-"))
    data_dir.chmod(0o711)  # as root, the server's own OS user must enter it
    common = ["--data-dir", str(data_dir)]
    good = cli_json(
        "org", "create", "good", "--plan", "ENTERPRISE", "--rate-limit", "1000000000", *common
    )
    hostile = cli_json("org", "create", "hostile", "--plan", "PRO", *common)
    hostile_admin = cli_json("key", "create", "--org", "hostile", "--scope", "admin", *common)
    good_key = good["key"]["key"]  # type: ignore[index]
    hostile_key = hostile["key"]["key"]  # type: ignore[index]
    admin_key = hostile_admin["key"]  # type: ignore[index]
    good_id = good["organization"]["id"]  # type: ignore[index]
    port = free_port()
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--log-level", "WARNING", "--workers", "2",
         "--grpc-port", "0", "--trusted-proxy", "127.0.0.1/32", *common],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    url = base + "/v1/traces"
    embedded = EmbeddedPostgres(data_dir)
    try:
        wait_ready(base)
        dsn = await embedded.start()
        process = psutil.Process(server.pid)
        db = await asyncpg.connect(dsn)

        def rss_mib() -> float:
            total = 0
            for member in [process, *process.children(recursive=True)]:
                try:
                    total += member.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            return total / 2**20

        async def good_rows() -> int:
            return int(await db.fetchval(
                "SELECT count(*) FROM telemetry_events WHERE organization_id = $1", good_id
            ))  # fmt: skip

        async def partitions() -> int:
            return int(await db.fetchval(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry_events'::regclass"
            ))  # fmt: skip

        retention_days = max(int(org["organization"]["retention_days"])  # type: ignore[index]
                             for org in (good, hostile))  # fmt: skip

        async def partitions_outside_window() -> list[str]:
            """Month partitions of months no tenant's span window reaches: from its retention
            back to a day ahead (the receiver's default), and the month after (made ahead)."""
            now = datetime.now(UTC)
            first = month_number(now - timedelta(days=retention_days))
            last = month_number(now + timedelta(days=1)) + 1
            names = await db.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'telemetry_events'::regclass"
            )  # fmt: skip
            outside = []
            for (name,) in names:
                if name.startswith("telemetry_events_p"):
                    stamp = name.removeprefix("telemetry_events_p")
                    if not first <= int(stamp[:4]) * 12 + int(stamp[4:]) - 1 <= last:
                        outside.append(name)
            return outside

        async def mismatched() -> int:
            # The good tenant's stored counts against what its own spans said.
            return int(await db.fetchval(
                """SELECT count(*) FROM telemetry_events WHERE organization_id = $1
                   AND (input_tokens IS DISTINCT FROM
                          (attributes->>'gen_ai.usage.input_tokens')::bigint
                        OR output_tokens IS DISTINCT FROM
                          (attributes->>'gen_ai.usage.output_tokens')::bigint
                        OR cost_source IS DISTINCT FROM 'computed'
                        OR price_model_id LIKE 'override:%')""",
                good_id,
            ))  # fmt: skip

        print("building payloads ...", flush=True)
        take = PayloadSupply(build_payloads(args.requests, SPANS)).take

        await drive(url, good_key, take(20), SPANS, seconds=3, concurrency=4)  # warm-up
        before = await good_rows()
        started = time.perf_counter()
        await drive(url, good_key, take(args.seconds * 60), SPANS, seconds=args.seconds,
                    concurrency=8)  # fmt: skip
        saturating = (await good_rows() - before) / (time.perf_counter() - started)
        half_rps = saturating / SPANS / 2
        print(f"good tenant alone at saturation: {saturating:,.0f} spans/s committed;"
              f" half load is {half_rps * SPANS:,.0f} spans/s", flush=True)  # fmt: skip

        async def under_attack(seconds: float, attack: str) -> Measured:
            """The good tenant's load for ``seconds`` while ``attack`` runs in every other
            window; its requests split by whether the attack was on when they were sent."""
            ours, theirs = multiprocessing.Pipe()
            child = multiprocessing.Process(
                target=attack_process,
                args=(
                    attack,
                    url,
                    good_key if attack == OWN_EXTRA else hostile_key,
                    seconds,
                    theirs,
                ),
            )
            child.start()
            await asyncio.to_thread(ours.recv)  # its payloads are built
            rss_start = rss_mib()
            ours.send("go")
            result = await drive(url, good_key, take(int(half_rps * seconds) + 50), SPANS,
                                 seconds=seconds, concurrency=8, rate_rps=half_rps)  # fmt: skip
            hostile_summary = await asyncio.to_thread(ours.recv)
            child.join()
            windows: dict[bool, list[tuple[float, int]]] = {True: [], False: []}
            for at, ms, status in zip(
                result.sent_at, result.latencies_ms, result.outcomes, strict=True
            ):
                windows[int(at / ON_OFF_SECONDS) % 2 == 0].append((ms, status))
            split = {
                on: Window(
                    spans_per_s=SPANS * sum(1 for _, st in w if st == 200) / (seconds / 2),
                    p99_ms=quantile([ms for ms, _ in w], 0.99),
                    requests=len(w),
                )
                for on, w in windows.items()
            }
            return Measured(
                name=attack,
                attacked=split[True],
                alone=split[False],
                rss_start=rss_start,
                rss_end=rss_mib(),
                seconds=seconds,
                partitions=await partitions(),
                mismatched_rows=await mismatched(),
                hostile=hostile_summary,
            )

        async with aiohttp.ClientSession() as session:
            for pattern in WORST_PATTERNS:
                async with session.post(
                    base + "/v1/prices",
                    headers={"Authorization": f"Bearer {admin_key}"},
                    json={"model_pattern": pattern, "input_per_mtok": "1", "output_per_mtok": "2"},
                ) as response:
                    if response.status != 201:
                        raise SystemExit(f"override refused: {await response.text()}")

        partitions_at_start = await partitions()
        results = []
        for name in args.only or ATTACKS:
            print(f"{name}: {args.attack_seconds}s, attacking every other {ON_OFF_SECONDS:g}s",
                  flush=True)  # fmt: skip
            results.append(await under_attack(args.attack_seconds, name))
        outside = await partitions_outside_window()
        await db.close()

        print()
        print(f"{'attack':<27} {'spans/s alone':>13} {'throughput':>10} {'p99 alone':>9}"
              f" {'p99':>6} {'RSS MiB during attack':>22} {'parts':>5} {'poisoned':>8}"
              "  hostile's answers")  # fmt: skip
        worst_tp, worst_p99, worst_growth = 1e9, 0.0, 0.0
        controls = [m for m in results if m.name in CONTROLS]
        for m in results:
            tp = m.attacked.spans_per_s / m.alone.spans_per_s
            p99 = m.attacked.p99_ms / m.alone.p99_ms
            growth = m.rss_end - m.rss_start
            worst_growth = max(worst_growth, growth / m.seconds * 60)
            if m.name not in CONTROLS:  # targets are the attacks'; controls show the load's part
                worst_tp, worst_p99 = min(worst_tp, tp), max(worst_p99, p99)
            print(f"{m.name:<27} {m.alone.spans_per_s:>13,.0f} {tp:>9.2f}x {m.alone.p99_ms:>7.0f}ms"
                  f" {p99:>5.2f}x {m.rss_start:>7.0f} -> {m.rss_end:>4.0f} ({growth:+.0f})"
                  f" {m.partitions:>5} {m.mismatched_rows:>8}  {m.hostile}")  # fmt: skip
        met = (worst_tp >= 0.8 and worst_p99 <= 2.0 and worst_growth < 50
               and all(m.mismatched_rows == 0 for m in results) and not outside)  # fmt: skip
        print(f"partitions: {partitions_at_start} before the attacks, {len(outside)} of months"
              f" outside the tenants' span windows ({retention_days} days back, a day ahead)"
              f"{': ' + ', '.join(outside) if outside else ''}")  # fmt: skip
        print(f"worst attack: throughput {worst_tp:.2f}x (target >= 0.8), p99 {worst_p99:.2f}x"
              f" (<= 2), RSS growth {worst_growth:.1f} MiB a minute (< 50); targets"
              f" {'met' if met else 'NOT met'}")  # fmt: skip
        for m in controls:
            print(
                f"control, {m.name.removesuffix(' (control)')}: throughput"
                f" {m.attacked.spans_per_s / m.alone.spans_per_s:.2f}x, p99"
                f" {m.attacked.p99_ms / m.alone.p99_ms:.2f}x (the same extra load, no attack)"
            )
        print(
            f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores,"
            " serve --workers 2, server and PostgreSQL on one machine"
        )
    finally:
        server.terminate()
        server.wait(timeout=60)
        await embedded.stop()
        if not args.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15, help="the saturation measurement")
    parser.add_argument("--attack-seconds", type=int, default=60, help="each attack's run")
    parser.add_argument("--requests", type=int, default=12000)
    parser.add_argument("--keep-data", action="store_true", help="keep the database directory")
    parser.add_argument("--only", action="append", choices=ATTACKS, help="run just this attack")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
