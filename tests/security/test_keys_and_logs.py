"""API keys are stored only as bcrypt hashes of cost 12 or more, and never appear in logs,
command output or HTTP answers, whatever key a client presents; failed authentication is
throttled per client and key id on the real server.

The scenario runs the CLI and `aethermind serve` as processes at DEBUG level, capturing
every line they write, and presents every kind of key: valid (each scope), revoked, wrong
secret, malformed, and pieces of real keys. Then every captured byte is searched for each
full key and for its secret part (whole, and its first 12 characters).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests

from aethermind.storage.keys import BCRYPT_ROUNDS, parse_key
from tests.faults.load import PROTOBUF, genai_request
from tests.faults.serving import CLI, owner_fetch, serving

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

DEBUG = ["--log-level", "DEBUG"]
JSON_TYPE = "application/json"


class Transcript:
    """Everything the processes printed and the server answered, to be searched."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.statuses: Counter[int] = Counter()

    def add(self, name: str, text: str) -> None:
        self.texts[name] = self.texts.get(name, "") + text

    def add_response(self, name: str, response: requests.Response) -> None:
        self.statuses[response.status_code] += 1
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.add(f"http {name}", f"{response.status_code}\n{headers}\n{response.text}\n")

    def leaks(self, secrets: dict[str, str]) -> list[tuple[str, str]]:
        return [
            (label, where)
            for label, secret in secrets.items()
            for where, text in self.texts.items()
            if secret in text
        ]


def cli(transcript: Transcript, database_url: str, *args: str) -> Any:
    result = subprocess.run(
        [*CLI, *args, "--database-url", database_url, "--json", *DEBUG],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    name = " ".join(args[:2])
    transcript.add(f"cli stderr: {name}", result.stderr)
    for line in result.stderr.splitlines():
        json.loads(line)  # logs are JSON lines, nothing else
    document = json.loads(result.stdout)
    if args[:2] not in (("org", "create"), ("key", "create")):
        # Only creation shows a key (once); every other command's output is searched too.
        transcript.add(f"cli stdout: {name}", result.stdout)
    return document


def secrets_of(keys: dict[str, str]) -> dict[str, str]:
    """Full key, secret, and secret prefix of each key: none may appear anywhere."""
    found = {}
    for label, key in keys.items():
        parsed = parse_key(key)
        assert parsed is not None
        found[f"{label} key"] = key
        found[f"{label} secret"] = parsed.secret
        found[f"{label} secret[:12]"] = parsed.secret[:12]
    return found


def post_from(address: str, port: int, key: str, extra: dict[str, str] | None = None) -> int:
    """A request from a given loopback source address (each is a different client)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(address, 0)
    )
    try:
        connection.request(
            "POST",
            "/v1/traces",
            body=genai_request(1)[0],
            headers={"Content-Type": PROTOBUF, "Authorization": f"Bearer {key}", **(extra or {})},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_keys_are_bcrypt_12_and_never_logged_echoed_or_stored_and_failures_are_throttled(
    database_url: str, tmp_path: Path
) -> None:
    transcript = Transcript()
    created = cli(transcript, database_url, "org", "create", "Leak Test", "--slug", "leak")
    keys = {"ingest": created["key"]["key"]}
    for scope in ("read", "admin"):
        keys[scope] = cli(
            transcript, database_url, "key", "create", "--org", "leak", "--scope", scope
        )["key"]
    doomed = cli(transcript, database_url, "key", "create", "--org", "leak", "--name", "doomed")
    keys["revoked"] = doomed["key"]
    cli(transcript, database_url, "key", "revoke", doomed["id"])
    cli(transcript, database_url, "key", "list", "--org", "leak")
    keys["other org"] = cli(transcript, database_url, "org", "create", "Other", "--slug", "other")[
        "key"
    ]["key"]
    public_id = parse_key(keys["ingest"]).public_id  # type: ignore[union-attr]
    wrong_secret = keys["ingest"][:-6] + (
        "AAAAAA" if not keys["ingest"].endswith("A") else "BBBBBB"
    )
    presented = {
        **keys,
        "wrong secret": wrong_secret,
        "key + junk": keys["ingest"] + "junk",
        "key - 1 char": keys["ingest"][:-1],
        "secret alone": parse_key(keys["read"]).secret,  # type: ignore[union-attr]
        "no prefix": keys["admin"].removeprefix("aether_"),
        "bare prefix": "aether_",
        "public id only": f"aether_{public_id}_",
        "unicode": "aether_\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9_" + "x" * 30,
    }

    with serving(database_url, tmp_path / "logs", args=DEBUG) as served:
        base = served.url
        # A span that carries keys in attributes named like credentials: never stored.
        carrier = _span_with_keys(keys["read"])
        response = requests.post(
            f"{base}/v1/traces",
            data=carrier,
            headers={"Content-Type": JSON_TYPE, "Authorization": f"Bearer {keys['ingest']}"},
            timeout=30,
        )
        assert response.status_code == 200
        transcript.add_response("credential attributes", response)
        # Then every kind of key, every way (this address ends up throttled: see below).
        statuses: dict[str, dict[str, int]] = {}
        for label, key in presented.items():
            row = statuses.setdefault(label, {})
            for how, headers in (
                ("bearer", {"Authorization": f"Bearer {key}"}),
                ("x-api-key", {"x-api-key": key}),
                ("basic", {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()}),
            ):
                for route, method in (
                    ("/v1/traces", "POST"),
                    ("/v1/ingest", "POST"),
                    ("/v1/aggregates", "GET"),
                ):
                    response = requests.request(
                        method,
                        base + route,
                        data=_body(route),
                        headers={**headers, "Content-Type": _ctype(route)},
                        timeout=30,
                    )
                    transcript.add_response(f"{label} {how} {method} {route}", response)
                    row[f"{how} {route}"] = response.status_code

        throttle = throttle_scenario(served.port, keys["ingest"])
        served.stop()
        transcript.add("serve stderr", served.stderr_text())
        transcript.add("serve stdout", served.stdout_text())
        records = served.log_records()

    # bcrypt cost from the stored hashes themselves.
    hashes = [r["key_hash"] for r in owner_fetch(database_url, "SELECT key_hash FROM api_keys")]
    costs = sorted({int(re.match(r"^\$2[aby]\$(\d\d)\$", h).group(1)) for h in hashes})  # type: ignore[union-attr]
    assert min(costs) >= BCRYPT_ROUNDS >= 12
    assert bcrypt.checkpw(keys["ingest"].encode(), _hash_of(database_url, keys["ingest"]).encode())

    stored = owner_fetch(
        database_url,
        "SELECT count(*) AS n FROM telemetry_events WHERE attributes::text LIKE '%' || $1 || '%' "
        "OR resource_attributes::text LIKE '%' || $1 || '%'",
        parse_key(keys["read"]).secret,  # type: ignore[union-attr]
    )[0]["n"]

    secrets = secrets_of(keys)
    secrets.update({"wrong secret": wrong_secret, "wrong secret's secret": wrong_secret[-43:]})
    leaks = transcript.leaks(secrets)
    request_lines = [r for r in records if r.get("msg") == "request"]
    auth_refusals = Counter(r["status"] for r in request_lines if r["status"] in (401, 403, 429))
    print(
        f"\n[security] keys: bcrypt cost of {len(hashes)} stored hashes {costs}; "
        f"{len(presented)} kinds of key x 3 ways x 3 routes = "
        f"{sum(transcript.statuses.values())} requests, statuses "
        f"{dict(sorted(transcript.statuses.items()))}; searched {len(transcript.texts)} "
        f"transcripts ({sum(len(t) for t in transcript.texts.values()) // 1024} KiB: CLI "
        f"stdout/stderr, serve stdout/stderr at DEBUG with {len(records)} JSON log lines and "
        f"{sum(auth_refusals.values())} refusals logged, every HTTP answer) for "
        f"{len(secrets)} secrets: {len(leaks)} found; key stored in credential attributes: "
        f"{stored}; throttle: {throttle}"
    )
    assert not leaks, leaks
    assert stored == 0
    assert auth_refusals[401] and auth_refusals[403]  # the failures were logged, without keys
    expect_statuses(statuses)


def expect_statuses(statuses: dict[str, dict[str, int]]) -> None:
    ingest_routes = ("/v1/traces", "/v1/ingest")
    for label, row in statuses.items():
        for cell, status in row.items():
            how, route = cell.split(" ")
            if how == "basic":
                expected = 401  # only Bearer and x-api-key carry keys
            elif label in ("ingest", "other org"):
                expected = 200 if route in ingest_routes else 403
            elif label == "read":
                expected = 200 if route == "/v1/aggregates" else 403
            elif label in ("admin", "revoked"):
                expected = 403
            else:
                expected = 401
            # Any failure may instead be throttled (429) once the address is over its limit.
            assert status == expected or (expected in (401, 403) and status == 429), (
                label,
                cell,
                status,
            )


def throttle_scenario(port: int, valid_key: str) -> dict[str, Any]:
    """Clients keep presenting bad keys. A malformed key from one address: 30 failures a
    minute, then 429 with Retry-After for that address and key. A well-formed key of an id
    nobody holds: 10 failed checks of that key id, then 429 for it from every address (each
    check of a real id would cost a bcrypt). Neither touches a valid key, from any address;
    a spoofed X-Forwarded-For changes nothing (the peer is no trusted proxy)."""
    garbage = "not-an-aethermind-key"
    flood = [post_from("127.0.0.2", port, garbage) for _ in range(35)]
    first_429 = flood.index(429) if 429 in flood else None
    unknown_id = "aether_nosuchkey000_" + "x" * 43
    guesses = [post_from("127.0.0.4", port, unknown_id) for _ in range(15)]
    outcome = {
        "malformed-key failures before 429": first_429,
        "statuses": dict(Counter(flood)),
        "unknown key id: statuses": dict(Counter(guesses)),
        "valid key from the blocked address": post_from("127.0.0.2", port, valid_key),
        "X-Forwarded-For from the blocked address": post_from(
            "127.0.0.2", port, garbage, {"X-Forwarded-For": "203.0.113.9"}
        ),
        "valid key from another address": post_from("127.0.0.3", port, valid_key),
        "malformed key from another address": post_from("127.0.0.3", port, garbage),
        "unknown key id from another address": post_from("127.0.0.3", port, unknown_id),
    }
    assert first_429 == 30 and set(flood[30:]) == {429}, outcome
    assert guesses[:10] == [401] * 10 and set(guesses[10:]) == {429}, outcome
    assert outcome["valid key from the blocked address"] == 200, outcome
    assert outcome["X-Forwarded-For from the blocked address"] == 429, outcome
    assert outcome["valid key from another address"] == 200, outcome
    assert outcome["malformed key from another address"] == 401, outcome
    assert outcome["unknown key id from another address"] == 429, outcome
    return outcome


def _body(route: str) -> bytes | None:
    if route == "/v1/traces":
        return genai_request(1)[0]
    if route == "/v1/ingest":
        return json.dumps(
            {"events": [{"model": "gpt-4o", "input_tokens": 1, "timestamp": time.time() * 1000}]}
        ).encode()
    return None


def _ctype(route: str) -> str:
    return PROTOBUF if route == "/v1/traces" else JSON_TYPE


def _span_with_keys(key: str) -> bytes:
    now = time.time_ns()
    names = [
        "http.request.header.authorization",
        "http.request.header.x-api-key",
        "openai.api_key",
        "aethermind.apikey",
        "client.secret",
        "db.password",
        "gen_ai.headers",
    ]
    attributes = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": 5}},
    ] + [{"key": name, "value": {"stringValue": f"Bearer {key}"}} for name in names]
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "api_key", "value": {"stringValue": key}}]},
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "7" * 32,
                                    "spanId": "8" * 16,
                                    "name": "chat gpt-4o",
                                    "startTimeUnixNano": str(now - 1000),
                                    "endTimeUnixNano": str(now),
                                    "attributes": attributes,
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    ).encode()


def _hash_of(database_url: str, key: str) -> str:
    parsed = parse_key(key)
    assert parsed is not None
    (row,) = owner_fetch(
        database_url, "SELECT key_hash FROM api_keys WHERE public_id = $1", parsed.public_id
    )
    return str(row["key_hash"])


@pytest.fixture(autouse=True)
def _loopback_aliases() -> None:
    """127.0.0.2 and .3 are loopback on Linux; skip where they are not."""
    try:
        for address in ("127.0.0.2", "127.0.0.3"):
            http.client.HTTPConnection("127.0.0.1", 9, source_address=(address, 0)).connect()
    except ConnectionRefusedError:
        return
    except OSError as exc:
        pytest.skip(f"no loopback alias to act as a second client address: {exc}")
