"""One replica syncs at a time: a lease document in Cosmos DB, taken and renewed with ETag guards.

The lease expires when its holder stops renewing it (a crash, a kill), so another replica takes
over after at most one lease period. Replica clocks are assumed to agree to well within that
period (NTP on every node).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otcommon.store import ConflictError, DocumentNotFoundError, EtagMismatchError, read_modify_write

if TYPE_CHECKING:
    from collections.abc import Callable

    from otcommon.store import Document, DocumentContainer


class LeaseLostError(Exception):
    """Another replica holds the lease now; the work it guards must stop."""


@dataclass(frozen=True, slots=True)
class LeaseState:
    """Who holds the lease, and until when (epoch seconds)."""

    holder: str | None
    expires_at: float


class SyncLease:
    """The lease of one named job in the ``state`` container (partitioned by ``/id``)."""

    def __init__(
        self,
        container: DocumentContainer,
        *,
        name: str,
        holder: str,
        duration_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._container = container
        self._id = f"lease:{name}"
        self._holder = holder
        self._duration = duration_seconds
        self._clock = clock
        self._etag: str | None = None

    @property
    def holder(self) -> str:
        """This replica's identity."""
        return self._holder

    @property
    def duration_seconds(self) -> float:
        """How long a taken or renewed lease lasts."""
        return self._duration

    async def try_acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours; False when another replica holds it."""

        def take(current: Document) -> Document | None:
            if (
                current.get("holder") not in (None, self._holder)
                and current.get("expiresAt", 0) > self._clock()
            ):
                return None
            return self._document()

        try:
            # One attempt: a compare-and-swap. Losing the race means another replica took the lease.
            outcome = await read_modify_write(
                self._container,
                self._id,
                partition_key=self._id,
                mutate=take,
                create=self._document,
                attempts=1,
            )
        except ConflictError:
            return False
        if outcome.result == "unchanged":
            return False
        self._etag = outcome.document["_etag"]
        return True

    async def renew(self) -> None:
        """Extend the lease; LeaseLostError when another replica took it meanwhile."""
        if self._etag is None:
            raise LeaseLostError("the lease was never taken")
        try:
            replaced = await self._container.replace(self._document(), etag=self._etag)
        except (EtagMismatchError, DocumentNotFoundError):
            self._etag = None
            raise LeaseLostError(f"{self._id} was taken by another replica") from None
        self._etag = replaced["_etag"]

    async def release(self) -> None:
        """Give the lease up at once, so another replica need not wait for it to expire."""
        if self._etag is None:
            return
        # A lease already taken over leaves nothing of ours to release.
        with contextlib.suppress(EtagMismatchError, DocumentNotFoundError):
            await self._container.replace(self._document(released=True), etag=self._etag)
        self._etag = None

    async def state(self) -> LeaseState:
        """The lease as stored."""
        try:
            current = await self._container.read(self._id, partition_key=self._id)
        except DocumentNotFoundError:
            return LeaseState(holder=None, expires_at=0.0)
        return LeaseState(holder=current.get("holder"), expires_at=float(current.get("expiresAt", 0.0)))

    def _document(self, *, released: bool = False) -> Document:
        return {
            "id": self._id,
            "kind": "lease",
            "holder": None if released else self._holder,
            "expiresAt": 0.0 if released else self._clock() + self._duration,
        }
