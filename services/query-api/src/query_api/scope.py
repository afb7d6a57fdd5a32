"""Which events a caller may see: applied beneath every query, so nothing else leaks."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True, slots=True)
class EventScope:
    """The events a caller may see; ``allowed`` None means every event."""

    allowed: frozenset[str] | None = None

    @classmethod
    def everything(cls) -> EventScope:
        """An unrestricted caller (an unscoped token)."""
        return cls(None)

    @classmethod
    def only(cls, event_ids: frozenset[str] | set[str] | list[str] | tuple[str, ...]) -> EventScope:
        """A caller restricted to these events (an empty set sees nothing)."""
        return cls(frozenset(event_ids))

    def permits(self, event_id: str) -> bool:
        """Whether the caller may see this event."""
        return self.allowed is None or event_id in self.allowed

    def expression(self) -> pl.Expr:
        """The row predicate of this scope."""
        if self.allowed is None:
            return pl.lit(value=True)
        return pl.col("eventId").is_in(sorted(self.allowed))
