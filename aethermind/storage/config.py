"""Where the database is and how the pool behaves: one frozen config resolved from
arguments, then the environment, then defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from aethermind.envconfig import SettingError, env_setting, parse_float, parse_int, parse_text

ENV_DATABASE_URL = "DATABASE_URL"
ENV_DATA_DIR = "AETHERMIND_DATA_DIR"
ENV_POOL_MIN_SIZE = "AETHERMIND_DB_POOL_MIN_SIZE"
ENV_POOL_MAX_SIZE = "AETHERMIND_DB_POOL_MAX_SIZE"
ENV_CONNECT_TIMEOUT = "AETHERMIND_DB_CONNECT_TIMEOUT"
ENV_COMMAND_TIMEOUT = "AETHERMIND_DB_COMMAND_TIMEOUT"

APP_NAME = "aethermind"


ROOT_DATA_DIR = Path("/var/lib") / APP_NAME


def default_data_dir() -> Path:
    """Where the embedded database lives when nothing else is said: the user's data
    directory, or for root ``/var/lib/aethermind``, because the server then runs as another OS
    user who could not enter root's home directory (mode 0700)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return ROOT_DATA_DIR
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """How to reach PostgreSQL: a URL, or (when ``database_url`` is None) an embedded server
    kept in ``data_dir``. ``sslmode`` and other libpq-style parameters in the URL are honoured
    by asyncpg itself."""

    database_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    min_pool_size: int = 1
    max_pool_size: int = 10
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    embedded_start_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.database_url is not None:
            if not self.database_url.startswith(("postgres://", "postgresql://")):
                raise ValueError(
                    "database_url must start with postgresql:// or postgres:// "
                    "(setting DATABASE_URL / --database-url)"
                )
        if self.min_pool_size < 0:
            raise ValueError(f"min_pool_size must be >= 0, got {self.min_pool_size}")
        if self.max_pool_size < 1:
            raise ValueError(f"max_pool_size must be >= 1, got {self.max_pool_size}")
        if self.min_pool_size > self.max_pool_size:
            raise ValueError(
                f"min_pool_size ({self.min_pool_size}) must not exceed "
                f"max_pool_size ({self.max_pool_size})"
            )
        for name in ("connect_timeout", "command_timeout", "embedded_start_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def embedded(self) -> bool:
        """True when no URL is configured and the embedded server will be used."""
        return self.database_url is None

    @classmethod
    def from_env(
        cls,
        database_url: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: float,
    ) -> DatabaseConfig:
        """Resolve argument > environment > default for each setting.

        ``env`` defaults to ``os.environ``; tests pass their own mapping. ``overrides`` sets
        pool sizes and timeouts directly (e.g. ``max_pool_size=4``).
        """
        environ: Mapping[str, str] = os.environ if env is None else env
        url = database_url or env_setting(environ, ENV_DATABASE_URL, parse_text)
        directory = Path(
            data_dir
            if data_dir is not None
            else env_setting(environ, ENV_DATA_DIR, parse_text) or default_data_dir()
        )
        settings: dict[str, float] = {}
        for name, variable, parse in (
            ("min_pool_size", ENV_POOL_MIN_SIZE, parse_int),
            ("max_pool_size", ENV_POOL_MAX_SIZE, parse_int),
            ("connect_timeout", ENV_CONNECT_TIMEOUT, parse_float),
            ("command_timeout", ENV_COMMAND_TIMEOUT, parse_float),
        ):
            value = env_setting(environ, variable, parse)
            if value is not None:
                settings[name] = value
        settings.update(overrides)
        defaults = cls(data_dir=directory)
        try:
            return cls(
                database_url=url,
                data_dir=directory.expanduser().resolve(),
                min_pool_size=int(settings.get("min_pool_size", defaults.min_pool_size)),
                max_pool_size=int(settings.get("max_pool_size", defaults.max_pool_size)),
                connect_timeout=float(settings.get("connect_timeout", defaults.connect_timeout)),
                command_timeout=float(settings.get("command_timeout", defaults.command_timeout)),
                embedded_start_timeout=float(
                    settings.get("embedded_start_timeout", defaults.embedded_start_timeout)
                ),
            )
        except ValueError as exc:
            raise SettingError(f"database settings: {exc}") from None
