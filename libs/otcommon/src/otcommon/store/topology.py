"""The one declaration of the Cosmos DB database: containers, partition keys, indexes, TTLs.

Provisioning applies it idempotently: what exists and matches is left alone, an indexing
policy that differs is replaced, and a partition key that differs is an error (Cosmos DB
cannot change one in place).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Order = Literal["ascending", "descending"]


@dataclass(frozen=True, slots=True)
class CompositeIndex:
    """An ordered list of (path, order) pairs; needed for ORDER BY on several properties."""

    paths: tuple[tuple[str, Order], ...]

    def to_policy(self) -> list[dict[str, str]]:
        """The indexing-policy form of this composite index."""
        return [{"path": path, "order": order} for path, order in self.paths]


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """How one container is declared."""

    name: str
    partition_key: str
    composite_indexes: tuple[CompositeIndex, ...] = ()
    excluded_paths: tuple[str, ...] = ()
    unique_keys: tuple[tuple[str, ...], ...] = ()
    default_ttl_seconds: int | None = None
    purpose: str = ""

    def indexing_policy(self) -> dict[str, Any]:
        """The container's indexing policy document."""
        policy: dict[str, Any] = {
            "indexingMode": "consistent",
            "automatic": True,
            "includedPaths": [{"path": "/*"}],
            "excludedPaths": [{"path": path} for path in (*self.excluded_paths, '/"_etag"/?')],
        }
        if self.composite_indexes:
            policy["compositeIndexes"] = [index.to_policy() for index in self.composite_indexes]
        return policy

    def unique_key_policy(self) -> dict[str, Any] | None:
        """The unique key policy, or None when the container declares none."""
        if not self.unique_keys:
            return None
        return {"uniqueKeys": [{"paths": list(paths)} for paths in self.unique_keys]}


@dataclass(frozen=True, slots=True)
class Topology:
    """The database and its containers."""

    containers: tuple[ContainerSpec, ...] = field(default_factory=tuple)

    def container(self, name: str) -> ContainerSpec:
        """The declaration of one container."""
        for spec in self.containers:
            if spec.name == name:
                return spec
        raise KeyError(name)


def _desc_pair(first: str, second: str = "/id") -> tuple[CompositeIndex, CompositeIndex]:
    # Pagination sorts by a column then id, in both directions, so each needs both orders.
    return (
        CompositeIndex(((first, "ascending"), (second, "ascending"))),
        CompositeIndex(((first, "descending"), (second, "descending"))),
    )


TRANSACTIONS = ContainerSpec(
    name="transactions",
    # One event's orders share a partition: the dashboard's queries are per event or per tour,
    # event-scoped tokens map to partition keys, and 1M orders over 50 events stays far below
    # the 20 GB logical partition limit.
    partition_key="/eventId",
    composite_indexes=(
        *_desc_pair("/PurchaseDate"),
        *_desc_pair("/TotalAmount"),
        *_desc_pair("/TotalTickets"),
        *_desc_pair("/Name"),
        *_desc_pair("/EventName"),
        CompositeIndex((("/enrichmentState", "ascending"), ("/sourceUpdatedAt", "ascending"))),
    ),
    purpose="Ticket transactions (one document per order) with Stripe enrichment.",
)

EVENTS = ContainerSpec(
    name="events",
    partition_key="/id",
    purpose="Event catalog: name, city, first and last sale, counts.",
)

QUARANTINE = ContainerSpec(
    name="quarantine",
    partition_key="/source",
    purpose="Rows and messages refused by validation, with the raw input and every reason.",
)

STATE = ContainerSpec(
    name="state",
    partition_key="/id",
    purpose="Sync checkpoints and leases (one document each, ETag-guarded).",
)

WEBHOOK_JOURNAL = ContainerSpec(
    name="webhook-journal",
    # Each record's partition is a bucket computed from its event id (webhooks/journal.py, a fixed
    # number for this container's life, so a redelivery's create always lands where the first did and
    # stays the idempotency key): records of one bucket are created and settled in transactional
    # batches. Stripe retries for three days and `replay` reaches back thirty: thirty days of records
    # keep every redelivery idempotent, and the TTL keeps the container bounded.
    partition_key="/bucket",
    # Nothing queries the event's payload: left out of the index, it costs no index storage or RU.
    excluded_paths=("/payload/*",),
    default_ttl_seconds=30 * 24 * 3600,
    purpose="Stripe webhook events recorded before acknowledgement (payload, state, reason), by event id.",
)

STRIPE_INDEX = ContainerSpec(
    name="stripe-index",
    # Point reads by key ("charge:ch_..", "account:acct_.."); a low-cardinality key would make hot partitions.
    partition_key="/id",
    purpose="Enricher caches: connected accounts, payouts, bank accounts, refresh cursors.",
)

STRIPE_FACTS = ContainerSpec(
    name="stripe-facts",
    # The enricher writes a listed page's facts (thousands per cold start) in transactional batches,
    # which need one partition: each key hashes to one of a few partitions (otcommon/stripe_facts.py),
    # so a page's documents go in a few batches and a point read still derives its partition from the key.
    partition_key="/partition",
    purpose=(
        "Enricher facts from Stripe's listings (payment-to-account map, transfers, payout links) and "
        "each payment's transactions (transactions-of:, read by the webhook service and ingest)."
    ),
)

DEFAULT_TOPOLOGY = Topology(
    containers=(TRANSACTIONS, EVENTS, QUARANTINE, STATE, WEBHOOK_JOURNAL, STRIPE_INDEX, STRIPE_FACTS),
)
