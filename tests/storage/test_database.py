"""The pool owner, its configuration, and the embedded server's lifecycle."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from aethermind.envconfig import SettingError
from aethermind.storage.config import DatabaseConfig, default_data_dir
from aethermind.storage.database import Database
from aethermind.storage.embedded import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    _bin_dir,
    _binaries_for,
    _read_postmaster_pid,
    _server_user,
    socket_dir_path,
)

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer


def test_config_prefers_argument_then_env_then_default(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://env@h/db", "AETHERMIND_DATA_DIR": str(tmp_path / "env")}
    assert (
        DatabaseConfig.from_env("postgresql://arg@h/db", env=env).database_url
        == "postgresql://arg@h/db"
    )
    assert DatabaseConfig.from_env(env=env).database_url == "postgresql://env@h/db"
    assert DatabaseConfig.from_env(env={}).database_url is None
    assert DatabaseConfig.from_env(env={}).embedded
    assert DatabaseConfig.from_env(data_dir=tmp_path / "arg", env=env).data_dir == tmp_path / "arg"
    assert DatabaseConfig.from_env(env=env).data_dir == tmp_path / "env"
    assert DatabaseConfig.from_env(env={}).data_dir == default_data_dir().resolve()


def test_config_refuses_bad_env_numbers_naming_the_variable_and_bad_arguments() -> None:
    # One policy for every server setting: a bad value is an error that names it.
    with pytest.raises(SettingError, match="AETHERMIND_DB_POOL_MAX_SIZE"):
        DatabaseConfig.from_env(env={"AETHERMIND_DB_POOL_MAX_SIZE": "lots"})
    assert DatabaseConfig.from_env(env={"AETHERMIND_DB_POOL_MAX_SIZE": "4"}).max_pool_size == 4
    with pytest.raises(ValueError, match="min_pool_size"):
        DatabaseConfig(min_pool_size=5, max_pool_size=2)
    with pytest.raises(ValueError, match="DATABASE_URL"):
        DatabaseConfig(database_url="mysql://x")


async def test_sslmode_in_the_url_is_honoured(postgres_admin_url: str) -> None:
    host = urlsplit(postgres_admin_url).hostname
    if not host:
        pytest.skip("embedded server listens on a unix socket, where SSL does not apply")
    sep = "&" if "?" in postgres_admin_url else "?"
    conn = await asyncpg.connect(postgres_admin_url + sep + "sslmode=disable")
    ssl_in_use = await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    await conn.close()
    assert ssl_in_use is False
    server_ssl = await _server_has_ssl(postgres_admin_url)
    if server_ssl:
        conn = await asyncpg.connect(postgres_admin_url + sep + "sslmode=require")
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        await conn.close()
    else:
        # Requiring SSL from a server without it must fail rather than silently go plain.
        with pytest.raises((ConnectionError, OSError, asyncpg.PostgresError)):
            await asyncpg.connect(postgres_admin_url + sep + "sslmode=require")


async def _server_has_ssl(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval("SELECT current_setting('ssl') = 'on'"))
    finally:
        await conn.close()


async def test_pool_connections_run_as_the_application_role(pool: object) -> None:
    async with pool.acquire() as conn:  # type: ignore[attr-defined]
        assert await conn.fetchval("SELECT current_user") == "aethermind_app"
        assert (
            await conn.fetchval("SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user")
            is False
        )


def _start_in_child(data_dir: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    server = EmbeddedPostgres(Path(data_dir))
    server.start_sync(timeout=120)
    queue.put((server.address.pid, server.started_here))
    server.stop_sync()


async def test_embedded_server_starts_is_reused_and_only_its_starter_stops_it(
    reachable_tmp_path: Path,
) -> None:
    data_dir = reachable_tmp_path / "data"
    first = Database(DatabaseConfig(data_dir=data_dir))
    pool = await first.open()
    assert first.embedded is not None and first.embedded.started_here
    pid = first.embedded.address.pid
    assert await pool.fetchval("SELECT 1") == 1

    # A second owner (another process) on the same directory joins the running server.
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_start_in_child, args=(str(data_dir), queue))
    child.start()
    child.join(60)
    assert queue.get(timeout=5) == (pid, False)
    # The joiner stopping did not stop the server.
    assert await pool.fetchval("SELECT 1") == 1

    await first.close()
    await first.close()  # idempotent
    assert _read_postmaster_pid(data_dir / "postgres") is None

    # Starting again on the same directory reuses the cluster (no re-init) and its data.
    async with Database(DatabaseConfig(data_dir=data_dir)) as again:
        assert await again.fetchval("SELECT 1") == 1


def _race_start(data_dir: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    server = EmbeddedPostgres(Path(data_dir))
    server.start_sync(timeout=120)
    queue.put((server.address.pid, server.started_here))
    # Keep it up until the parent has read both results; the starter stops it at exit.
    import time

    time.sleep(2)
    server.stop_sync()


def test_two_processes_starting_at_once_share_one_server(reachable_tmp_path: Path) -> None:
    tmp_path = reachable_tmp_path
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race_start, args=(str(tmp_path / "d"), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert results[0][0] == results[1][0]
    assert sorted(started for _, started in results) == [False, True]


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="as a normal user the server runs as that user: nothing to reach"
)


@needs_root
def test_root_refuses_a_data_dir_the_server_user_cannot_reach_and_changes_no_permissions(
    tmp_path: Path,
) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    with pytest.raises(EmbeddedPostgresError, match="--data-dir") as raised:
        EmbeddedPostgres(private / "aethermind").start_sync(timeout=30)
    assert str(private) in str(raised.value)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert not (private / "aethermind").exists()


@needs_root
def test_root_default_data_dir_is_outside_roots_home() -> None:
    assert default_data_dir() == Path("/var/lib/aethermind")


@needs_root
def test_binaries_out_of_the_server_users_reach_are_copied_not_opened_up(
    reachable_tmp_path: Path,
) -> None:
    tmp_path = reachable_tmp_path
    private = tmp_path / "venv"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    shutil.copytree(_bin_dir().parent, private / "pginstall", symlinks=True)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o711)
    user = _server_user()
    assert user is not None

    bin_dir = _binaries_for(private / "pginstall" / "bin", data_dir, user)

    assert bin_dir == data_dir / "pginstall" / "bin"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    version = subprocess.run(
        [str(bin_dir / "postgres"), "--version"],
        user=user.pw_uid, group=user.pw_gid, extra_groups=[],
        capture_output=True, text=True, check=True, timeout=30, cwd="/",
    )  # fmt: skip
    assert "PostgreSQL" in version.stdout
    # A second start reuses the copy.
    assert _binaries_for(private / "pginstall" / "bin", data_dir, user) == bin_dir


def test_a_predictable_socket_directory_made_by_someone_else_is_refused(
    reachable_tmp_path: Path,
) -> None:
    # A data directory so deep that the socket cannot live in it goes under the temp dir,
    # where anyone could have made the directory first (here: a symlink to a decoy).
    data_dir = reachable_tmp_path / ("d" * 60) / ("e" * 60)
    pgdata = data_dir / "postgres"
    socket_dir = socket_dir_path(pgdata, 5432)
    assert socket_dir != pgdata
    decoy = reachable_tmp_path / "decoy"
    decoy.mkdir()
    socket_dir.symlink_to(decoy)
    try:
        with pytest.raises(EmbeddedPostgresError, match="refusing to put the database socket"):
            EmbeddedPostgres(data_dir).start_sync(timeout=60)
        assert list(decoy.iterdir()) == []
    finally:
        socket_dir.unlink()
