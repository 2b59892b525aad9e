"""The fixed latency histogram the hourly rollup keeps, and percentiles read back from it.

Bounds are in milliseconds and mirror the SQL function ``aethermind_latency_bounds()``:
bucket 0 holds durations below the first bound, bucket i those in [bounds[i-1], bounds[i]),
the last bucket everything from the last bound up.
"""

from __future__ import annotations

from collections.abc import Sequence

LATENCY_BOUNDS_MS: tuple[float, ...] = (
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    25000,
    60000,
    120000,
    300000,
)
BUCKET_COUNT = len(LATENCY_BOUNDS_MS) + 1
BUCKET_COLUMNS: tuple[str, ...] = tuple(f"latency_b{i:02d}" for i in range(BUCKET_COUNT))


def bucket_of(duration_ms: float) -> int:
    """The bucket a duration falls in (same rule as SQL ``width_bucket``)."""
    for index, bound in enumerate(LATENCY_BOUNDS_MS):
        if duration_ms < bound:
            return index
    return len(LATENCY_BOUNDS_MS)


def percentile(
    counts: Sequence[int],
    q: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | None:
    """Estimate the ``q`` quantile (0..1) by linear interpolation inside its bucket.

    The observed minimum and maximum clamp the first and last buckets (and every bucket's
    edges), so a group whose spans all took 1.2 s never reports 2.5 s.
    Returns None for an empty histogram.
    """
    if len(counts) != BUCKET_COUNT:
        raise ValueError(f"expected {BUCKET_COUNT} bucket counts, got {len(counts)}")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    total = sum(counts)
    if total == 0:
        return None
    # Rank on the same scale as percentile_cont: position q*(n-1) among n ordered values,
    # where the k-th value (0-based) sits at the middle of its slot in its bucket.
    rank = q * (total - 1)
    cumulative = 0
    for index, count in enumerate(counts):
        if count == 0:
            continue
        if rank < cumulative + count or cumulative + count == total:
            lower = LATENCY_BOUNDS_MS[index - 1] if index > 0 else 0.0
            upper = (
                LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else (maximum or lower)
            )
            if minimum is not None:
                lower = max(lower, minimum)
                upper = max(upper, minimum)
            if maximum is not None:
                upper = min(upper, maximum)
                lower = min(lower, maximum)
            fraction = (rank - cumulative + 0.5) / count
            fraction = min(max(fraction, 0.0), 1.0)
            return float(lower + (upper - lower) * fraction)
        cumulative += count
    return maximum  # unreachable: the loop returns on the last non-empty bucket
