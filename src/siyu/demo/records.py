"""The sandbox world's record types: plain dataclasses of numpy arrays and builtins, no database.

Times are int64 UTC epoch seconds (`*_at` arrays); -1 means "none". Indexes point into the
vocabulary in `vocab` or into the World's own lists, as each field says.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from datetime import datetime

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class Operator:
    """A console user of the brand; `handle` makes a stable login (admin, op01, ...)."""

    handle: str
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """A carrier account run by `operator` (index into World.operators)."""

    kind: str
    external_id: str
    name: str
    operator: int
    soft_cap: int
    hard_cap: int
    created_at: int


@dataclass(frozen=True, eq=False)
class Customers:
    """One row per customer, in arrival order (the loader's ids follow this order)."""

    created_at: NDArray[np.int64]
    source: NDArray[np.int8]  # index into vocab.SOURCES
    name: list[str]
    gender: NDArray[np.int8]  # index into vocab.GENDERS
    mobile: NDArray[np.int64]  # 0 when the customer never gave one
    region: NDArray[np.int16]  # index into World.regions, -1 unknown
    intent: list[str]
    source_detail: list[str]
    remark: list[str]
    stage: NDArray[np.int8]  # index into vocab.STAGES
    consent_marketing: NDArray[np.bool_]
    updated_at: NDArray[np.int64]
    referrer: NDArray[np.int32]  # index of the referring customer, -1 if none
    purchase_rate: NDArray[np.float64]  # latent truth, kept for tests and CLV checks
    dropout_probability: NDArray[np.float64]
    alive: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.created_at.shape[0])

    def mobile_text(self, i: int) -> str | None:
        """Customer i's mobile as text, or None."""
        value = int(self.mobile[i])
        return str(value) if value else None


@dataclass(frozen=True, eq=False)
class Identities:
    """Platform identifiers: kind indexes vocab.IDENTITY_KINDS."""

    customer: NDArray[np.int32]
    kind: NDArray[np.int8]
    value: list[str]


@dataclass(frozen=True, eq=False)
class Follows:
    """Follow relations between accounts and customers; status indexes vocab.FOLLOW_STATUSES."""

    customer: NDArray[np.int32]
    account: NDArray[np.int32]
    since: NDArray[np.int64]
    status: NDArray[np.int8]
    ended_at: NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class CustomerTags:
    """Tags on customers; tag indexes World.tags (flattened over the groups)."""

    customer: NDArray[np.int32]
    tag: NDArray[np.int16]
    created_at: NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Orders:
    """Orders sorted by paid_at; platform indexes vocab.PLATFORMS; account -1 when bought off-carrier."""

    customer: NDArray[np.int32]
    account: NDArray[np.int32]
    platform: NDArray[np.int8]
    external_id: list[str]
    amount_fen: NDArray[np.int64]
    refunded_fen: NDArray[np.int64]
    paid_at: NDArray[np.int64]
    refunded_at: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.paid_at.shape[0])


@dataclass(frozen=True, eq=False)
class OrderItems:
    """Order lines; product indexes vocab.PRODUCTS."""

    order: NDArray[np.int32]
    product: NDArray[np.int8]
    quantity: NDArray[np.int16]
    unit_price_fen: NDArray[np.int64]
    unit_cost_fen: NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Events:
    """The event log sorted by time; type indexes vocab.EVENT_TYPES; `ref` is an order index or -1."""

    customer: NDArray[np.int32]
    account: NDArray[np.int32]
    type: NDArray[np.int8]
    occurred_at: NDArray[np.int64]
    ref: NDArray[np.int32]

    def __len__(self) -> int:
        return int(self.occurred_at.shape[0])


@dataclass(frozen=True, eq=False)
class World:
    """Everything the sandbox brand holds; see the module docstring."""

    seed: int
    start: datetime
    end: datetime
    campaign_days: tuple[int, ...]
    live_day: int
    operators: list[Operator]
    accounts: list[AccountSpec]
    regions: list[str]
    tag_groups: list[tuple[str, tuple[str, ...]]]
    tags: list[tuple[int, str]]  # (group index, tag name), flattened in group order
    customers: Customers
    identities: Identities
    follows: Follows
    customer_tags: CustomerTags
    orders: Orders
    order_items: OrderItems
    events: Events
    params: dict[str, float] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """SHA-256 over every value in the world: equal worlds give equal fingerprints."""
        digest = hashlib.sha256()
        for part in (
            self.customers,
            self.identities,
            self.follows,
            self.customer_tags,
            self.orders,
            self.order_items,
            self.events,
        ):
            for f in fields(part):
                value = getattr(part, f.name)
                digest.update(f.name.encode())
                if isinstance(value, np.ndarray):
                    digest.update(value.dtype.str.encode())
                    digest.update(np.ascontiguousarray(value).tobytes())
                else:
                    digest.update("\x1f".join(value).encode())
        digest.update(
            repr(
                (
                    self.seed,
                    self.start,
                    self.end,
                    self.operators,
                    self.accounts,
                    self.regions,
                    self.tag_groups,
                    self.tags,
                )
            ).encode()
        )
        return digest.hexdigest()
