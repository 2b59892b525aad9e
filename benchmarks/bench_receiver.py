"""End-to-end receiver benchmark: start `aethermind serve` on the embedded PostgreSQL, drive it
with the asyncio load generator (512-span OTLP/protobuf requests), and print:

- committed spans/s at saturation (counted in the database, not just acknowledged),
- request latency p50/p99 at half that load,
- server RSS over a minute at twice the saturating load, and what the excess got (503s),
- the raw-COPY baseline: the same rows COPYed into a plain table, in the same run.

Targets (issue 3 of 7), on a 2-core machine with server and PostgreSQL on the same box:
>= 30,000 spans/s; p99 <= 100 ms at half load; bounded memory and 503s (not timeouts) at 2x.

    python benchmarks/bench_receiver.py [--seconds 20] [--overload-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import LoadResult, PayloadSupply, build_payloads, drive, drive_grpc

from aethermind.storage.embedded import EmbeddedPostgres

SPANS = 512
CLI = [sys.executable, "-m", "aethermind.cli"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 90) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("server did not become ready")


async def count_rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM telemetry_events"))
    finally:
        await conn.close()


async def copy_baseline(dsn: str, rows: int) -> float:
    """Rows/s of COPY of the same stored rows into a plain, unindexed table."""
    conn = await asyncpg.connect(dsn)
    try:
        records = await conn.fetch(
            'SELECT trace_id, span_id, parent_span_id, name, kind, "timestamp", duration_ms,'
            " status, error_type, service, environment, provider, operation, request_model,"
            " response_model, input_tokens, output_tokens, cache_read_tokens,"
            " cache_write_tokens, reasoning_tokens, total_tokens, cost, cost_input,"
            " cost_cache_read, cost_cache_write, cost_output, cost_source, price_model_id,"
            " provided_cost, attributes::text, resource_attributes::text"
            f" FROM telemetry_events LIMIT {rows}"
        )
        await conn.execute(
            "DROP TABLE IF EXISTS copy_baseline;"
            " CREATE TABLE copy_baseline (LIKE telemetry_events INCLUDING DEFAULTS);"
            " ALTER TABLE copy_baseline ALTER COLUMN attributes TYPE text,"
            " ALTER COLUMN resource_attributes TYPE text, ALTER COLUMN organization_id DROP NOT NULL"
        )
        columns = list(records[0].keys())
        columns[-2:] = ["attributes", "resource_attributes"]
        tuples = [tuple(r) for r in records]
        started = time.perf_counter()
        for i in range(0, len(tuples), SPANS):
            await conn.copy_records_to_table(
                "copy_baseline", records=tuples[i : i + SPANS], columns=columns
            )
        elapsed = time.perf_counter() - started
        await conn.execute("DROP TABLE copy_baseline")
        return len(tuples) / elapsed
    finally:
        await conn.close()


@dataclass
class BackgroundSample:
    """What PostgreSQL was doing besides our writes, sampled every quarter second."""

    at: float  # seconds from the start of the phase
    autovacuum: list[str]  # tables an autovacuum worker was processing
    checkpoint_buffers: int  # buffers the checkpointer wrote since the previous sample


async def watch_background(dsn: str, stop: asyncio.Event) -> list[BackgroundSample]:
    """Autovacuum and checkpoint activity during a phase, to explain latency outliers."""
    conn = await asyncpg.connect(dsn)
    samples: list[BackgroundSample] = []
    started = time.perf_counter()
    try:
        previous = int(await conn.fetchval("SELECT buffers_written FROM pg_stat_checkpointer"))
        while not stop.is_set():
            workers = await conn.fetch(
                "SELECT query FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
                " AND query LIKE 'autovacuum:%'"
            )
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            written = int(await conn.fetchval("SELECT buffers_written FROM pg_stat_checkpointer"))
            samples.append(
                BackgroundSample(
                    at=time.perf_counter() - started,
                    autovacuum=[r["query"].removeprefix("autovacuum: ") for r in workers],
                    checkpoint_buffers=written - previous,
                )
            )
            previous = written
            await asyncio.sleep(0.25)
    finally:
        await conn.close()
    return samples


def explain_outliers(result: LoadResult, samples: list[BackgroundSample], limit_ms: float) -> str:
    """Which slow requests overlapped autovacuum or checkpoint writes (within a second)."""
    slow = [
        (at, ms)
        for at, ms in zip(result.sent_at, result.latencies_ms, strict=True)
        if ms > limit_ms
    ]
    if not slow:
        return f"  no request over {limit_ms:.0f} ms"

    def busy(at: float, ms: float) -> tuple[bool, bool]:
        near = [s for s in samples if at - 1 <= s.at <= at + ms / 1000 + 1]
        return any(s.autovacuum for s in near), any(s.checkpoint_buffers for s in near)

    flags = [busy(at, ms) for at, ms in slow]
    vacuumed = sorted({t for s in samples for t in s.autovacuum})
    return (
        f"  {len(slow)} requests over {limit_ms:.0f} ms; {sum(v for v, _ in flags)} overlapped"
        f" autovacuum, {sum(c for _, c in flags)} overlapped checkpoint writes,"
        f" {sum(not v and not c for v, c in flags)} neither\n"
        f"  autovacuum during the phase: {', '.join(vacuumed) or 'none'};"
        f" checkpoint buffers written: {sum(s.checkpoint_buffers for s in samples)}"
    )


def describe(name: str, result: LoadResult) -> str:
    return (
        f"{name}: {result.sent} requests in {result.elapsed:.1f}s, statuses {dict(sorted(result.statuses.items()))},"
        f" client errors/timeouts {result.errors}, p50 {result.percentile(0.5):.1f} ms,"
        f" p99 {result.percentile(0.99):.1f} ms"
    )


async def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="aethermind-bench-"))
    data_dir.chmod(0o711)  # as root, the server's own OS user must enter it
    common = ["--data-dir", str(data_dir)]
    created = json.loads(
        subprocess.run(
            [*CLI, "org", "create", "bench", "--plan", "ENTERPRISE", "--rate-limit", "1000000000", "--json", *common],
            check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    key = created["key"]["key"]
    port, grpc_port = free_port(), free_port()
    grpc_flags = ["--grpc-port", str(grpc_port) if args.protocol == "grpc" else "0"]
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--log-level", "WARNING", "--workers", str(args.workers), *grpc_flags, *common],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    embedded = EmbeddedPostgres(data_dir)
    try:
        wait_ready(base)
        dsn = (await embedded.start()).replace("/postgres?", "/postgres?")
        process = psutil.Process(server.pid)

        def server_rss_mib() -> float:
            # The supervisor and its workers: what the receiver holds in all.
            total = 0
            try:
                members = [process, *process.children(recursive=True)]
            except psutil.NoSuchProcess:
                return 0.0  # the server is stopping
            for member in members:
                try:
                    total += member.memory_info().rss
                except psutil.NoSuchProcess:
                    continue  # a worker that just exited
            return total / 2**20

        def worker_cpu() -> dict[int, float]:
            # CPU seconds per serving process, to show how the kernel spread connections.
            out = {}
            serving = [p for p in process.children(recursive=True) if "--worker" in p.cmdline()]
            for member in serving or [process]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = member.cpu_times()
                    out[member.pid] = times.user + times.system
            return out

        def cpu_split(before: dict[int, float]) -> str:
            after = worker_cpu()
            used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
            total = sum(used.values()) or 1.0
            return " / ".join(f"{v / total:.0%}" for v in sorted(used.values(), reverse=True))

        url = base + "/v1/traces"
        print(f"building {args.requests} payloads of {SPANS} spans ...", flush=True)
        take = PayloadSupply(build_payloads(args.requests, SPANS, users=args.users)).take

        await drive(url, key, take(20), SPANS, seconds=3, concurrency=4)  # warm-up
        cpu_before = worker_cpu()
        saturated, stored, elapsed = await saturate(args, dsn, drive, url, key, take)
        spans_per_s = stored / elapsed
        print(describe("saturation", saturated))
        print(
            f"  committed: {stored} spans in {elapsed:.1f}s = {spans_per_s:,.0f} spans/s (target >= 30,000)"
        )
        print(f"  serving processes' share of server CPU: {cpu_split(cpu_before)}")
        if args.protocol == "grpc":
            urls = (url, f"127.0.0.1:{grpc_port}")

            def share() -> Callable[[], str]:
                before = worker_cpu()
                return lambda: cpu_split(before)

            await compare_grpc(args, dsn, key, urls, take, spans_per_s, share)

        half_rps = spans_per_s / SPANS / 2
        watching = asyncio.Event()
        watcher = asyncio.create_task(watch_background(dsn, watching))
        cpu_before = worker_cpu()
        half = await drive(url, key, take(int(half_rps * args.seconds) + 50), SPANS, seconds=args.seconds,
                           concurrency=args.concurrency, rate_rps=half_rps)  # fmt: skip
        watching.set()
        print(describe(f"half load ({half_rps * SPANS:,.0f} spans/s offered)", half))
        print(f"  p99 {half.percentile(0.99):.1f} ms (target <= 100 ms)")
        print(f"  serving processes' share of server CPU: {cpu_split(cpu_before)}")
        print(explain_outliers(half, await watcher, 100))

        rss: list[float] = []
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                rss.append(server_rss_mib())
                await asyncio.sleep(1)

        sampler = asyncio.create_task(sample())
        over_rps = spans_per_s / SPANS * 2
        overload = await drive(url, key, take(int(over_rps * args.overload_seconds) + 50), SPANS,
                               seconds=args.overload_seconds, concurrency=args.concurrency * 4,
                               rate_rps=over_rps)  # fmt: skip
        stop.set()
        await sampler
        print(describe(f"2x load ({over_rps * SPANS:,.0f} spans/s offered)", overload))
        third = max(len(rss) // 3, 1)
        print(
            f"  server RSS MiB: start {rss[0]:.0f}, max {max(rss):.0f}, mean of first third"
            f" {sum(rss[:third]) / third:.0f}, mean of last third {sum(rss[-third:]) / third:.0f}"
        )

        baseline = await copy_baseline(dsn, min(stored, 200_000))
        print(f"raw COPY of the same rows into a plain table: {baseline:,.0f} rows/s;"
              f" receiver end to end is {spans_per_s / baseline:.0%} of it")  # fmt: skip
        print(f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores,"
              f" {args.workers} serving process(es)")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=60)
        await embedded.stop()
        if not args.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)


async def saturate(
    args: argparse.Namespace,
    dsn: str,
    send: Callable[..., Awaitable[LoadResult]],
    where: str,
    key: str,
    take: Callable[[int], list[bytes]],
) -> tuple[LoadResult, int, float]:
    """One saturation phase through ``send`` (drive or drive_grpc): the spans committed and
    the seconds it took."""
    before = await count_rows(dsn)
    started = time.perf_counter()
    result = await send(
        where,
        key,
        take(args.seconds * 120),
        SPANS,
        seconds=args.seconds,
        concurrency=args.concurrency,
    )
    elapsed = time.perf_counter() - started
    return result, await count_rows(dsn) - before, elapsed


async def compare_grpc(
    args: argparse.Namespace,
    dsn: str,
    key: str,
    urls: tuple[str, str],
    take: Callable[[int], list[bytes]],
    http_spans_per_s: float,
    share: Callable[[], Callable[[], str]],
) -> None:
    """The saturation phase over OTLP/gRPC (fresh spans of the same shape), then over HTTP
    once more, so the comparison is not skewed by drift over the run. Target: gRPC within
    10% of HTTP."""
    url, target = urls
    await drive_grpc(target, key, take(20), SPANS, seconds=3, concurrency=4)  # warm-up
    split = share()
    result, stored, elapsed = await saturate(args, dsn, drive_grpc, target, key, take)
    grpc_spans_per_s = stored / elapsed
    print(describe("saturation over OTLP/gRPC", result))
    print(f"  serving processes' share of server CPU: {split()}")
    _, stored, elapsed = await saturate(args, dsn, drive, url, key, take)
    http_again = stored / elapsed
    http_mean = (http_spans_per_s + http_again) / 2
    print(
        f"  committed over gRPC: {grpc_spans_per_s:,.0f} spans/s; over HTTP before and after"
        f" it {http_spans_per_s:,.0f} and {http_again:,.0f} spans/s;"
        f" gRPC / HTTP {grpc_spans_per_s / http_mean:.2f} (target >= 0.90)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--overload-seconds", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=14000)
    parser.add_argument("--workers", type=int, default=1, help="aethermind serve --workers")
    parser.add_argument(
        "--users", type=int, default=0,
        help="every span names one of this many users and a session of theirs (0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--protocol", choices=["http", "grpc"], default="http",
        help="grpc: also run the saturation phase over OTLP/gRPC, printed beside HTTP",
    )  # fmt: skip
    parser.add_argument("--keep-data", action="store_true", help="keep the database directory")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
