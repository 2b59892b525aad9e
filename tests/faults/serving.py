"""`aethermind serve` as a real process for the fault and security tests, and what they
read back from it: Prometheus metrics, JSON log lines, memory, the stored rows.

Output goes to files, never pipes: a pipe nobody reads would block a chatty server, and the
security tests search the whole log afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import requests
from prometheus_client.parser import text_string_to_metric_families

from aethermind.storage.config import DatabaseConfig
from aethermind.storage.database import Database
from aethermind.storage.migrate import migrate
from tests.plugins.database import run_async
from tests.plugins.receiver import Tenant, make_tenant
from tests.plugins.services import free_port, wait_for_port

CLI = [sys.executable, "-m", "aethermind.cli"]


def database_steps_bounded(seconds: float) -> dict[str, str]:
    """The environment that bounds every database step of a request (writes, key checks,
    reads, admin statements) by ``seconds``."""
    return {
        f"AETHERMIND_{kind}_TIMEOUT_SECONDS": str(seconds)
        for kind in ("WRITE", "AUTH", "READ", "ADMIN")
    }


@dataclass
class ServeProcess:
    """One `aethermind serve` process, its port and its captured output."""

    port: int
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def healthy(self, timeout: float = 5.0) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=timeout).status_code == 200
        except requests.RequestException:
            return False

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``: (name, sorted labels) -> value."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples named ``name`` whose labels include ``labels`` (0 if none)."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, sample_labels), value in self.metrics().items()
            if sample == name and wanted <= set(sample_labels)
        )

    def rss_bytes(self) -> int:
        """Resident memory of the serving process (Linux /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines on stderr; a line that is not JSON fails the caller's test."""
        records = []
        for line in self.stderr_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
        return records

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()


def start_serve(
    database_url: str,
    log_dir: Path,
    *,
    port: int | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    name: str = "serve",
    timeout: float = 60.0,
) -> ServeProcess:
    """Start `aethermind serve` on ``database_url`` and wait until ``/healthz`` answers."""
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    index = len(list(log_dir.glob(f"{name}-*.stderr")))
    stdout_path = log_dir / f"{name}-{index}.stdout"
    stderr_path = log_dir / f"{name}-{index}.stderr"
    # gRPC off unless asked for: the default port 4317 may be taken on a test machine.
    grpc = [] if "--grpc-port" in args else ["--grpc-port", "0"]
    command = [*CLI, "serve", "--database-url", database_url, "--port", str(port), *grpc, *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("DATABASE_URL", None)
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=full_env)
    served = ServeProcess(port, process, stdout_path, stderr_path, command, full_env)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not served.alive():
                raise RuntimeError(
                    f"serve exited with {process.returncode}:\n{served.stderr_text()}"
                )
            try:
                wait_for_port(port, timeout=0.5)
            except TimeoutError:
                pass
            else:
                if served.healthy(timeout=2):
                    return served
            if time.monotonic() > deadline:
                raise TimeoutError(f"serve not healthy after {timeout}s:\n{served.stderr_text()}")
            time.sleep(0.1)
    except BaseException:
        served.kill()
        raise


def restart(served: ServeProcess, *, timeout: float = 60.0) -> ServeProcess:
    """The same command again (same port, same database), after the old process is gone."""
    log_dir = served.stderr_path.parent
    name = served.stderr_path.name.rsplit("-", 1)[0]
    index = len(list(log_dir.glob(f"{name}-*.stderr")))
    stdout_path = log_dir / f"{name}-{index}.stdout"
    stderr_path = log_dir / f"{name}-{index}.stderr"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(served.command, stdout=out, stderr=err, env=served.env)
    again = ServeProcess(served.port, process, stdout_path, stderr_path, served.command, served.env)
    deadline = time.monotonic() + timeout
    while not again.healthy(timeout=1):
        if not again.alive():
            raise RuntimeError(f"serve exited with {process.returncode}:\n{again.stderr_text()}")
        if time.monotonic() > deadline:
            again.kill()
            raise TimeoutError(f"restarted serve not healthy after {timeout}s")
        time.sleep(0.05)
    return again


@contextlib.contextmanager
def serving(database_url: str, log_dir: Path, **options: Any) -> Iterator[ServeProcess]:
    served = start_serve(database_url, log_dir, **options)
    try:
        yield served
    finally:
        served.kill()


# --- the database, as its owner ---------------------------------------------------------


def create_tenants(
    database_url: str, *slugs: str, migrate_first: bool = False, **org_options: Any
) -> list[Tenant]:
    """Organizations with an ingest and a read key each, made through the storage API."""

    async def make() -> list[Tenant]:
        config = DatabaseConfig(database_url=database_url, min_pool_size=1, max_pool_size=2)
        async with Database(config) as pool:
            if migrate_first:
                await migrate(pool)
            return [await make_tenant(pool, slug, **org_options) for slug in slugs]

    return run_async(make())


def owner_fetch(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of ``sql`` run as the login role (the schema owner: row-level security off)."""

    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return run_async(fetch())


def stored_spans(database_url: str, organization_id: Any = None) -> Counter[tuple[str, str]]:
    """(trace id, span id) -> number of rows, over every organization or one."""
    sql = "SELECT trace_id, span_id, count(*) AS n FROM telemetry_events"
    args: tuple[Any, ...] = ()
    if organization_id is not None:
        sql += " WHERE organization_id = $1"
        args = (organization_id,)
    rows = owner_fetch(database_url, sql + " GROUP BY 1, 2", *args)
    return Counter({(r["trace_id"], r["span_id"]): r["n"] for r in rows})


def rollup_calls(database_url: str, organization_id: Any) -> tuple[int, int]:
    """Calls counted by the hourly and the daily rollup of one organization."""
    rows = owner_fetch(
        database_url,
        """SELECT (SELECT coalesce(sum(calls), 0) FROM usage_rollup_hourly
                    WHERE organization_id = $1) AS hourly,
                  (SELECT coalesce(sum(calls), 0) FROM usage_rollup_daily
                    WHERE organization_id = $1) AS daily""",
        organization_id,
    )
    return int(rows[0]["hourly"]), int(rows[0]["daily"])


class LockHolder(threading.Thread):
    """Holds ``LOCK TABLE <table> IN ACCESS EXCLUSIVE MODE`` for ``seconds`` in its own
    connection, as a migration or a manual maintenance job would."""

    def __init__(self, database_url: str, table: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.database_url, self.table, self.seconds = database_url, table, seconds
        self.locked = threading.Event()
        self.locked_at = self.released_at = 0.0

    def run(self) -> None:
        async def hold() -> None:
            conn = await asyncpg.connect(self.database_url)
            try:
                async with conn.transaction():
                    await conn.execute(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE")
                    self.locked_at = time.monotonic()
                    self.locked.set()
                    await asyncio.sleep(self.seconds)
                self.released_at = time.monotonic()
            finally:
                await conn.close()

        run_async(hold())


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
