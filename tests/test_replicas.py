"""Two receiver processes against one PostgreSQL and one Redis behave as one service:
migrations safe when both start at once, one shared rate limit, revocation seen by both
within 5 seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from tests.plugins.services import free_port, wait_for_port
from tests.receiver.helpers import PROTOBUF, llm_spans, protobuf_body

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

CLI = [sys.executable, "-m", "aethermind.cli"]


@contextmanager
def replicas(database_url: str, redis_url: str, count: int) -> Iterator[list[str]]:
    ports = [free_port() for _ in range(count)]
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url}
    # Logs go to files: a pipe nobody reads would block a chatty server.
    logs = [tempfile.TemporaryFile(mode="w+") for _ in ports]
    processes = [
        subprocess.Popen(
            [*CLI, "serve", "--port", str(port), "--grpc-port", "0"],
            env=env,
            stdout=log,
            stderr=log,
            text=True,
        )
        for port, log in zip(ports, logs, strict=True)
    ]
    try:
        for port in ports:
            wait_for_port(port, timeout=60)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for process, log in zip(processes, logs, strict=True):
            log.seek(0)
            output = log.read()
            log.close()
            assert process.returncode == 0, output


def cli(*args: str, database_url: str) -> dict[str, object]:
    result = subprocess.run(
        [*CLI, *args, "--database-url", database_url, "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    document: dict[str, object] = json.loads(result.stdout)
    return document


def post(url: str, key: str, spans: int) -> requests.Response:
    return requests.post(
        f"{url}/v1/traces", data=protobuf_body(llm_spans(spans)), timeout=30,
        headers={"Content-Type": PROTOBUF, "Authorization": f"Bearer {key}"},
    )  # fmt: skip


def test_two_replicas_share_migrations_rate_limit_and_revocations(
    empty_database_url: str, redis_url: str
) -> None:
    # Both start on a database with no schema at all: the advisory lock serializes them.
    with replicas(empty_database_url, redis_url, 2) as (first, second):
        created = cli(
            "org", "create", "Shared", "--rate-limit", "600", database_url=empty_database_url
        )
        key = created["key"]["key"]  # type: ignore[index]
        key_id = created["key"]["id"]  # type: ignore[index]

        # One bucket of 600 spans a minute, drawn from through either replica.
        assert post(first, key, 400).status_code == 200
        refused = post(second, key, 300)
        assert refused.status_code == 429
        assert refused.headers["X-RateLimit-Limit"] == "600"
        assert post(second, key, 100).status_code == 200

        # Both replicas have the key cached; a revocation reaches both within 5 seconds.
        cli("key", "revoke", str(key_id), database_url=empty_database_url)
        revoked_at = time.monotonic()
        pending = {first, second}
        while pending and time.monotonic() - revoked_at < 5:
            for url in list(pending):
                if post(url, key, 1).status_code == 403:
                    pending.discard(url)
            time.sleep(0.1)
        assert not pending, f"still accepting a revoked key after 5 s: {pending}"

    migrations = cli("migrate", database_url=empty_database_url)
    assert migrations["applied"] == []  # applied exactly once, by whichever replica won
