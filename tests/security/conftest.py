"""A receiver process shared by the hostile-input and tenancy tests of this package:
`aethermind serve` on its own fresh migrated database, with one organization per test
module so each checks its own rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.serving import ServeProcess, create_tenants, serving
from tests.plugins.database import _fresh_database
from tests.plugins.receiver import Tenant
from tests.plugins.services import free_port, wait_for_port


@dataclass
class Target:
    served: ServeProcess
    database_url: str
    tenants: dict[str, Tenant]
    log_dir: Path
    grpc_port: int

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@pytest.fixture(scope="package")
def package_database_url(postgres_admin_url: str, template_database: str) -> Iterator[str]:
    """A fresh migrated database shared by the tests of this package."""
    yield from _fresh_database(postgres_admin_url, template_database)


@pytest.fixture(scope="package")
def target(package_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    slugs = ("fuzz", "ingest-fuzz", "limits")
    tenants = create_tenants(package_database_url, *slugs, rate_limit_per_min=10**8)
    log_dir = tmp_path_factory.mktemp("hostile-logs")
    # The tenant matrix presents revoked and wrong keys on purpose, more than the default 30
    # a minute from one address; the throttle itself is proven in test_keys_and_logs.
    throttle = {
        "AETHERMIND_AUTH_MAX_FAILURES_PER_MINUTE": "10000",
        "AETHERMIND_AUTH_MAX_FAILURES_PER_KEY_ID_PER_MINUTE": "10000",
    }
    grpc_port = free_port()
    with serving(
        package_database_url, log_dir, env=throttle, args=["--grpc-port", str(grpc_port)]
    ) as served:
        wait_for_port(grpc_port, timeout=30)
        yield Target(
            served,
            package_database_url,
            dict(zip(slugs, tenants, strict=True)),
            log_dir,
            grpc_port,
        )
