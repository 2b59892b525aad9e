"""Group the concurrent writes of one organization into one transaction.

Requests of one organization arriving together all update the same rollup rows (same hour,
models, services); as separate transactions they queue on those row locks, each holding
its connection through a commit. Written together they make one COPY, one rollup upsert
and one commit: more spans per second, and no lock convoy in the latency tail.

Every request still gets its own answer only after the transaction holding its rows has
committed. A group that PostgreSQL refuses for a bad value is retried request by request,
so only the request that carried the value fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aethermind.storage.errors import is_bad_data
from aethermind.storage.span_row import CopyRow
from aethermind.storage.writer import PartitionCache, write_copy_row_groups

logger = logging.getLogger(__name__)

CopyRows = Sequence[CopyRow]


def _new_future() -> asyncio.Future[int]:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    # A request that gave up (timed out, client gone) leaves nobody to read the outcome;
    # reading it here keeps asyncio from reporting an exception "never retrieved".
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


@dataclass(slots=True)
class _Pending:
    rows: CopyRows
    done: asyncio.Future[int] = field(default_factory=_new_future)


class WriteCoalescer:
    """One writer task per organization with work pending; requests join its next write."""

    def __init__(self, pool: Any, *, max_rows: int = 8192, timeout: float | None = None):
        self._pool = pool
        self._partitions = PartitionCache()
        self._max_rows = max_rows
        self._timeout = timeout
        self._queues: dict[UUID, list[_Pending]] = {}
        self._writers: dict[UUID, asyncio.Task[None]] = {}
        self.transactions = 0
        self.groups_written = 0

    async def write(self, organization_id: UUID, rows: CopyRows) -> int:
        """Store ``rows``; return how many were new. Raises what the write raised."""
        pending = _Pending(rows)
        queue = self._queues.setdefault(organization_id, [])
        queue.append(pending)
        if organization_id not in self._writers:
            self._writers[organization_id] = asyncio.create_task(self._drain(organization_id))
        try:
            # Shielded: a request that gives up does not cancel a write others share...
            return await asyncio.shield(pending.done)
        except asyncio.CancelledError:
            # ...but rows not yet taken by a write leave with it: the client was told to
            # retry, and an outage must not pile up every retry's rows in the queue.
            if pending in queue:
                queue.remove(pending)
            raise

    async def close(self) -> None:
        """Wait for the writes in progress (called once no request can arrive)."""
        if self._writers:
            await asyncio.gather(*self._writers.values(), return_exceptions=True)

    async def _drain(self, organization_id: UUID) -> None:
        queue = self._queues[organization_id]
        try:
            while queue:
                taken = _take(queue, self._max_rows)
                await self._write(organization_id, taken)
        finally:
            del self._writers[organization_id]
            if not queue:
                self._queues.pop(organization_id, None)

    async def _write(self, organization_id: UUID, taken: list[_Pending]) -> None:
        try:
            counts = await write_copy_row_groups(
                self._pool,
                organization_id,
                [p.rows for p in taken],
                partitions=self._partitions,
                timeout=self._timeout,
            )
        except Exception as exc:
            if is_bad_data(exc) and len(taken) > 1:
                logger.info(
                    "grouped write refused a value; writing its requests one by one",
                    extra={"organization_id": str(organization_id), "requests": len(taken)},
                )
                for pending in taken:
                    await self._write(organization_id, [pending])
                return
            # Without its traceback the exception holds no frame, so no cycle through this
            # frame's ``taken`` keeps every waiter's rows alive until a full collection.
            exc = exc.with_traceback(None)
            for pending in taken:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            return
        self.transactions += 1
        self.groups_written += len(taken)
        for pending, count in zip(taken, counts, strict=True):
            if not pending.done.done():
                pending.done.set_result(count)


def _take(queue: list[_Pending], max_rows: int) -> list[_Pending]:
    """The oldest requests up to ``max_rows`` rows (always at least one request)."""
    taken = [queue.pop(0)]
    rows = len(taken[0].rows)
    while queue and rows + len(queue[0].rows) <= max_rows:
        rows += len(queue[0].rows)
        taken.append(queue.pop(0))
    return taken
