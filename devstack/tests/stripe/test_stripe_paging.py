"""Lists page as Stripe's do: newest first, `starting_after` / `ending_before`, `has_more`, filters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from devstack.scenario import Route

if TYPE_CHECKING:
    from collections.abc import Callable

    import stripe

    from devstack.stripe.testing import StripeSandboxHandle

pytestmark = pytest.mark.integration


def newest_first(objects: Any, owner: dict[str, str], account: str) -> list[str]:
    mine = [o for o in objects if owner[o["id"]] == account]
    return [o["id"] for o in sorted(mine, key=lambda o: (o["created"], o["id"]), reverse=True)]


async def walk(api: Callable[..., Any], path: str, params: dict[str, str], **kwargs: Any) -> list[str]:
    ids: list[str] = []
    query = dict(params)
    while True:
        answer = await api(path, params=query, **kwargs)
        assert answer.status == 200, answer.body
        assert answer.body["object"] == "list"
        assert answer.body["url"] == path
        ids.extend(item["id"] for item in answer.body["data"])
        if not answer.body["has_more"]:
            return ids
        query["starting_after"] = ids[-1]


async def test_charges_page_newest_first_to_the_end_and_back(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    world = sandbox.world
    expected = newest_first(world.charges.values(), world.owner, sandbox.platform_account_id)
    assert len(expected) > 25
    assert await walk(api, "/v1/charges", {"limit": "7"}) == expected
    # ending_before gives the page just newer than the cursor, still newest first.
    answer = await api("/v1/charges", params={"limit": "5", "ending_before": expected[12]})
    assert [c["id"] for c in answer.body["data"]] == expected[7:12]
    assert answer.body["has_more"] is True
    answer = await api("/v1/charges", params={"limit": "5", "ending_before": expected[3]})
    assert [c["id"] for c in answer.body["data"]] == expected[:3]
    assert answer.body["has_more"] is False
    default = await api("/v1/charges")
    assert [c["id"] for c in default.body["data"]] == expected[:10]


async def test_created_filters_bound_the_list(sandbox: StripeSandboxHandle, api: Callable[..., Any]) -> None:
    world = sandbox.world
    mine = [c for c in world.charges.values() if world.owner[c["id"]] == sandbox.platform_account_id]
    times = sorted(c["created"] for c in mine)
    low, high = times[len(times) // 4], times[3 * len(times) // 4]
    params = {"created[gte]": str(low), "created[lt]": str(high), "limit": "100"}
    ids = await walk(api, "/v1/charges", params)
    assert ids
    assert sorted(ids) == sorted(c["id"] for c in mine if low <= c["created"] < high)
    exact = await walk(api, "/v1/charges", {"created": str(low)})
    assert sorted(exact) == sorted(c["id"] for c in mine if c["created"] == low)


async def test_connected_lists_hold_only_that_accounts_objects(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    world = sandbox.world
    for account in (a for a in world.accounts if a != sandbox.platform_account_id):
        expected = newest_first(world.charges.values(), world.owner, account)
        assert await walk(api, "/v1/charges", {"limit": "100"}, account=account) == expected
        payouts = newest_first(world.payouts.values(), world.owner, account)
        assert await walk(api, "/v1/payouts", {"limit": "100"}, account=account) == payouts


async def test_payout_filters(sandbox: StripeSandboxHandle, api: Callable[..., Any]) -> None:
    world = sandbox.world
    account = max((a for a in world.accounts), key=lambda a: sum(world.owner[p] == a for p in world.payouts))
    mine = [p for p in world.payouts.values() if world.owner[p["id"]] == account]
    for status in {p["status"] for p in mine}:
        ids = await walk(api, "/v1/payouts", {"status": status}, account=account)
        assert sorted(ids) == sorted(p["id"] for p in mine if p["status"] == status)
    middle = sorted(p["arrival_date"] for p in mine)[len(mine) // 2]
    ids = await walk(api, "/v1/payouts", {"arrival_date[lte]": str(middle)}, account=account)
    assert sorted(ids) == sorted(p["id"] for p in mine if p["arrival_date"] <= middle)


async def test_transfers_list_by_group_destination_and_created(
    sandbox: StripeSandboxHandle, client: stripe.StripeClient, api: Callable[..., Any]
) -> None:
    world = sandbox.world
    platform = sandbox.platform_account_id
    assert await walk(api, "/v1/transfers", {"limit": "7"}) == newest_first(
        world.transfers.values(), world.owner, platform
    )
    separate = [f for f in world.payments.values() if f.route is Route.SEPARATE_TRANSFER]
    assert separate
    for facts in separate[:5]:
        group = world.charges[facts.charge_id]["transfer_group"]
        listed = await client.v1.transfers.list_async(params={"transfer_group": group})
        assert [t.id for t in listed.data] == [facts.transfer_id]
        assert listed.data[0].source_transaction == facts.charge_id
    destination = separate[0].destination_account_id
    assert destination is not None
    to_one = await walk(api, "/v1/transfers", {"destination": destination, "limit": "100"})
    expected = [t["id"] for t in world.transfers.values() if t["destination"] == destination]
    assert sorted(to_one) == sorted(expected)
    newest = max(t["created"] for t in world.transfers.values())
    assert (
        await walk(api, "/v1/transfers", {"created[gte]": str(newest)})
        == [t["id"] for t in world.transfers.values() if t["created"] >= newest][::-1]
    )
    # Stripe's transfer list has no `source_transaction` filter; neither has this one.
    refused = await api("/v1/transfers", params={"source_transaction": separate[0].charge_id})
    assert refused.status == 400
    assert refused.body["error"]["param"] == "source_transaction"
    # A connected account made no transfers.
    assert await walk(api, "/v1/transfers", {}, account=destination) == []


async def test_a_payouts_balance_transactions_with_the_charge_expanded(
    sandbox: StripeSandboxHandle, client: stripe.StripeClient
) -> None:
    world = sandbox.world
    automatic = [
        p for p in world.payouts.values() if p["automatic"] and world.payout_balance_transactions[p["id"]]
    ]
    payout = automatic[0]
    account = world.owner[payout["id"]]
    options: Any = {} if account == sandbox.platform_account_id else {"stripe_account": account}
    listed = await client.v1.balance_transactions.list_async(
        params={"payout": payout["id"], "limit": 100, "expand": ["data.source"]}, options=options
    )
    assert sorted(t.id for t in listed.data) == sorted(world.payout_balance_transactions[payout["id"]])
    for txn in listed.data:
        assert not isinstance(txn.source, str)
        assert txn.source is not None
        assert txn.source.id == world.balance_transactions[txn.id]["source"]


async def test_a_manual_payout_cannot_list_its_transactions(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    world = sandbox.world
    manual = next(p for p in world.payouts.values() if not p["automatic"])
    answer = await api(
        "/v1/balance_transactions", params={"payout": manual["id"]}, account=world.owner[manual["id"]]
    )
    assert answer.status == 400
    assert answer.body["error"]["param"] == "payout"


async def test_charges_list_expands_their_balance_transactions(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    answer = await api("/v1/charges", params=[("limit", "20"), ("expand[]", "data.balance_transaction")])
    assert answer.status == 200
    for charge in answer.body["data"]:
        txn = charge["balance_transaction"]
        assert txn == sandbox.world.balance_transactions[txn["id"]]
        assert txn["source"] == charge["id"]


async def test_application_fees_and_accounts_page(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    world = sandbox.world
    fees = newest_first(world.application_fees.values(), world.owner, sandbox.platform_account_id)
    assert fees
    assert await walk(api, "/v1/application_fees", {"limit": "9"}) == fees
    accounts = sorted(
        (a for key, a in world.accounts.items() if key != sandbox.platform_account_id),
        key=lambda a: (a["created"], a["id"]),
        reverse=True,
    )
    assert await walk(api, "/v1/accounts", {"limit": "1"}) == [a["id"] for a in accounts]


async def test_bad_paging_parameters_are_refused(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    for params in ({"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"created[after]": "1"}):
        answer = await api("/v1/charges", params=params)
        assert answer.status == 400, params
        assert answer.body["error"]["type"] == "invalid_request_error"
    answer = await api("/v1/charges", params={"starting_after": "ch_1NoSuchChargeAnywhere"})
    assert answer.status == 400
    assert answer.body["error"]["code"] == "resource_missing"
    assert answer.body["error"]["param"] == "starting_after"
    answer = await api("/v1/charges", params=[("expand[]", "data.colour")])
    assert answer.status == 400
    assert answer.body["error"]["param"] == "expand"
