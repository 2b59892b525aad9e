"""What price data is in use: the genai-prices package and how recent its prices are.
Updating prices from the network stays opt-in (genai-prices' own updater); this only reads."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from datetime import UTC, date, datetime

from genai_prices.data_snapshot import DataSnapshot, get_snapshot
from genai_prices.types import StartDateConstraint


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    package_version: str
    auto_updated: bool
    """Whether the prices came from genai-prices' updater rather than the bundled data."""
    newest_change: date | None
    """The latest dated price change in the data that is already in effect: the data is at
    least this recent."""
    scheduled_changes: int
    """Dated price changes the data already knows of that take effect later."""

    def age_seconds(self, now: datetime | None = None) -> float | None:
        """Seconds since ``newest_change`` took effect: the data knew prices up to then, and
        cannot know of changes made after it was built."""
        if self.newest_change is None:
            return None
        moment = now or datetime.now(UTC)
        start = datetime(self.newest_change.year, self.newest_change.month,
                         self.newest_change.day, tzinfo=UTC)  # fmt: skip
        return max((moment - start).total_seconds(), 0.0)


def snapshot_info(
    snapshot: DataSnapshot | None = None, *, today: date | None = None
) -> SnapshotInfo:
    snapshot = snapshot or get_snapshot()
    today = today or datetime.now(UTC).date()
    past: list[date] = []
    scheduled = 0
    for provider in snapshot.providers:
        for model in provider.models:
            if not isinstance(model.prices, list):
                continue
            for conditional in model.prices:
                constraint = getattr(conditional, "constraint", None)
                if isinstance(constraint, StartDateConstraint):
                    start = constraint.start_date
                    start = start.date() if isinstance(start, datetime) else start
                    if start <= today:
                        past.append(start)
                    else:
                        scheduled += 1
    return SnapshotInfo(
        package_version=importlib.metadata.version("genai-prices"),
        auto_updated=bool(snapshot.from_auto_update),
        newest_change=max(past) if past else None,
        scheduled_changes=scheduled,
    )
