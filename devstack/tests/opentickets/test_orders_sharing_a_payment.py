"""An order paid by another order's payment: listed by the API after the next checkpoint, same PaymentID."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from devstack.opentickets.testing import fetch_all_transactions

if TYPE_CHECKING:
    import aiohttp

    from devstack.opentickets.testing import SandboxHandle

pytestmark = pytest.mark.integration


async def test_a_new_order_paid_by_an_existing_payment_is_listed_since_the_checkpoint(
    sandbox: SandboxHandle, http: aiohttp.ClientSession, api_key: dict[str, str]
) -> None:
    first = await fetch_all_transactions(http, sandbox.base_url, headers=api_key, params={"limit": "500"})
    checkpoint = max(row["updatedAt"] for row in first)
    paid = next(row for row in first if row["PaymentID"])

    [new_id] = sandbox.add_order_paid_by(paid["id"]).new_ids
    again = sandbox.add_order_paid_by(paid["id"]).new_ids

    delta = await fetch_all_transactions(
        http, sandbox.base_url, headers=api_key, params={"updatedSince": checkpoint, "limit": "50"}
    )
    listed = {row["id"]: row for row in delta}
    assert {new_id, *again} <= set(listed)
    assert new_id not in again
    assert new_id not in {row["id"] for row in first}
    new = listed[new_id]
    assert (new["PaymentID"], new["eventId"]) == (paid["PaymentID"], paid["eventId"])
    assert new["ticketId"] != paid["ticketId"]
    assert len(list(sandbox.scenario.transactions())) == len(first) + 2


async def test_an_order_that_is_not_listed_cannot_be_paid_for_again(sandbox: SandboxHandle) -> None:
    with pytest.raises(KeyError):
        sandbox.add_order_paid_by("otx_not_an_order")
