"""The ``stripe-facts`` container's layout: each key hashes to one of a few partitions.

The enricher writes Stripe's facts there by the thousand (a cold start lists tens of thousands),
in transactional batches, which need one partition each: with a partition per key (``/id``) every
fact would cost a request of its own. Each key therefore hashes (crc32, the same in every process)
to one of ``FACT_PARTITIONS`` partitions, and a reader derives a key's partition from the key.
The webhook service and ingest read the ``transactions-of:`` documents kept there
(``otcommon.payment_transactions``) the same way.
"""

from __future__ import annotations

import zlib

FACT_PARTITIONS = 8
"""Partitions of ``stripe-facts``. A listed page's facts cost about this many batches. A key's
partition follows from this number: changing it strands every stored fact (rebuild the container:
the enricher's ``reindex`` from empty cursors). Eight partitions of 20 GB each hold some 200
million facts."""

PARTITION_FIELD = "partition"
"""The ``stripe-facts`` partition key field."""


def fact_partition(key: str) -> str:
    """The ``stripe-facts`` partition of a key."""
    return f"facts-{zlib.crc32(key.encode()) % FACT_PARTITIONS}"
