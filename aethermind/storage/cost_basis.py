"""Which cost an organization's totals count: ours, computed from the tokens at list (or
its own) prices, or, where a span reported one, the cost the span reported (a gateway's
charge, LiteLLM's or OpenRouter's ``usage.cost``, a coding agent's ``cost_usd``).

Both stay stored; the choice is applied when totals are read, so changing it changes every
answer at once, history included. The rollups sum our cost of the spans that reported one
(``cost_of_provided``), so the reported basis is ``cost - cost_of_provided + provided_cost``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, Literal
from uuid import UUID

from aethermind.storage.scope import PoolOrConnection, tenant_transaction

CostBasis = Literal["computed", "provided"]
COST_BASES: Final[tuple[CostBasis, ...]] = ("computed", "provided")
DEFAULT_COST_BASIS: Final[CostBasis] = "computed"


def parse_cost_basis(value: object) -> CostBasis:
    """``value`` as a cost basis; ValueError naming the choices otherwise."""
    for basis in COST_BASES:
        if value == basis:
            return basis
    raise ValueError(f"cost_basis must be one of {', '.join(COST_BASES)}, got {value!r}")


async def read_cost_basis(conn: Any, organization_id: UUID, *, timeout: float | None) -> CostBasis:
    """The organization's basis, read on ``conn`` (inside a tenant transaction)."""
    stored = await conn.fetchval(
        "SELECT cost_basis FROM organizations WHERE id = $1", organization_id, timeout=timeout
    )
    return parse_cost_basis(stored or DEFAULT_COST_BASIS)


async def get_cost_basis(
    pool_or_conn: PoolOrConnection, organization_id: UUID | str, *, timeout: float | None = None
) -> CostBasis:
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        return await read_cost_basis(conn, UUID(str(organization_id)), timeout=timeout)


async def set_cost_basis(
    pool_or_conn: PoolOrConnection,
    organization_id: UUID | str,
    basis: object,
    *,
    timeout: float | None = None,
) -> CostBasis:
    """Set the organization's basis (validated); returns it as stored."""
    parsed = parse_cost_basis(basis)
    async with tenant_transaction(pool_or_conn, organization_id) as conn:
        await conn.execute(
            "UPDATE organizations SET cost_basis = $2 WHERE id = $1",
            UUID(str(organization_id)),
            parsed,
            timeout=timeout,
        )
    return parsed


def cost_on_basis(
    basis: CostBasis,
    computed: Decimal | None,
    cost_of_provided: Decimal | None,
    provided: Decimal | None,
) -> Decimal | None:
    """A total on ``basis`` from the sums: ``computed`` (our cost of the priced spans; None
    when none was), ``cost_of_provided`` (ours of those that reported a cost) and
    ``provided`` (what they reported)."""
    if basis == "computed" or provided is None:
        return computed
    return (computed or Decimal(0)) - (cost_of_provided or Decimal(0)) + provided
