"""Every payment of the scenario is found where it lives, through the official `stripe` client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import stripe

from devstack.scenario import Route

if TYPE_CHECKING:
    from devstack.scenario import PaymentFacts
    from devstack.stripe.testing import StripeSandboxHandle

pytestmark = pytest.mark.integration


def _options(sandbox: StripeSandboxHandle, account: str) -> dict[str, str]:
    return {} if account == sandbox.platform_account_id else {"stripe_account": account}


async def _check_payment(
    client: stripe.StripeClient, sandbox: StripeSandboxHandle, facts: PaymentFacts
) -> None:
    options = _options(sandbox, facts.account_id)
    if facts.payment_intent_id is not None:
        intent = await client.v1.payment_intents.retrieve_async(
            facts.payment_intent_id,
            params={"expand": ["latest_charge.balance_transaction"]},
            options=options,
        )
        charge = intent.latest_charge
        assert not isinstance(charge, str)
        assert charge is not None
    else:
        charge = await client.v1.charges.retrieve_async(
            facts.charge_id, params={"expand": ["balance_transaction"]}, options=options
        )
    assert charge.id == facts.charge_id
    txn = charge.balance_transaction
    assert not isinstance(txn, str)
    assert txn is not None
    assert txn.id == facts.balance_transaction_id
    assert txn.available_on == facts.available_on
    if facts.route is Route.DESTINATION:
        assert facts.transfer_id is not None
        transfer = await client.v1.transfers.retrieve_async(facts.transfer_id)
        assert transfer.destination == facts.destination_account_id
        assert transfer.destination_payment == facts.destination_payment_id
    if facts.application_fee_id is not None:
        fee = await client.v1.application_fees.retrieve_async(facts.application_fee_id)
        assert fee.amount == facts.application_fee_amount


async def test_every_payment_is_found_on_its_account(
    sandbox: StripeSandboxHandle, client: stripe.StripeClient
) -> None:
    payments = list(sandbox.world.payments.values())
    routes = {facts.route for facts in payments}
    assert routes == set(Route)
    for facts in payments[:: max(1, len(payments) // 60)]:
        await _check_payment(client, sandbox, facts)
    # Every kind of payment once more: legacy charges and each route.
    for route in Route:
        await _check_payment(client, sandbox, next(f for f in payments if f.route is route))
    await _check_payment(client, sandbox, next(f for f in payments if f.payment_intent_id is None))


async def test_payouts_lead_to_their_bank_account(
    sandbox: StripeSandboxHandle, client: stripe.StripeClient
) -> None:
    traced = [f for f in sandbox.world.payments.values() if f.payout_id is not None]
    assert traced
    for facts in traced[:: max(1, len(traced) // 20)]:
        account = facts.destination_account_id or facts.account_id
        assert facts.payout_id is not None
        payout = await client.v1.payouts.retrieve_async(
            facts.payout_id, params={"expand": ["destination"]}, options=_options(sandbox, account)
        )
        assert payout.status == facts.payout_status
        assert payout.arrival_date == facts.payout_arrival_date
        bank = payout.destination
        assert not isinstance(bank, str)
        assert bank is not None
        assert bank.id == facts.deposit_bank_account_id
        external = await client.v1.accounts.external_accounts.retrieve_async(account, bank.id)
        assert external.id == bank.id


async def test_accounts_are_read_by_id_and_as_themselves(
    sandbox: StripeSandboxHandle, client: stripe.StripeClient
) -> None:
    world = sandbox.world
    platform = await client.v1.accounts.retrieve_current_async()
    assert platform.id == sandbox.platform_account_id
    connected = [a for a in world.accounts if a != sandbox.platform_account_id]
    for account_id in connected:
        account = await client.v1.accounts.retrieve_async(account_id)
        assert account.id == account_id
        itself = await client.v1.accounts.retrieve_current_async(options={"stripe_account": account_id})
        assert itself.id == account_id
    listed = await client.v1.accounts.list_async(params={"limit": 100})
    assert sorted(a.id for a in listed.data) == sorted(connected)


async def test_expansion_follows_the_links_stripe_follows_across_accounts(
    sandbox: StripeSandboxHandle, client: stripe.StripeClient
) -> None:
    facts = next(f for f in sandbox.world.payments.values() if f.route is Route.DESTINATION)
    assert facts.transfer_id is not None
    transfer = await client.v1.transfers.retrieve_async(
        facts.transfer_id, params={"expand": ["destination_payment", "destination"]}
    )
    arrived = transfer.destination_payment
    assert not isinstance(arrived, str)
    assert arrived is not None
    assert arrived.id == facts.destination_payment_id
    assert sandbox.world.owner[arrived.id] == facts.destination_account_id
    destination = transfer.destination
    assert not isinstance(destination, str)
    assert destination is not None
    assert destination.id == facts.destination_account_id
    # A charge on another account is not the platform's to expand through its own balance transaction.
    direct = next(f for f in sandbox.world.payments.values() if f.route is Route.DIRECT)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.charges.retrieve_async(direct.charge_id, params={"expand": ["balance_transaction"]})
    assert missing.value.http_status == 404


async def test_expansion_is_refused_beyond_four_levels_and_on_plain_fields(
    api: Any, sandbox: StripeSandboxHandle
) -> None:
    intent = next(iter(sandbox.world.payment_intents))
    account = sandbox.world.owner[intent]
    deep = await api(
        f"/v1/payment_intents/{intent}", params={"expand[]": "latest_charge.a.b.c.d"}, account=account
    )
    assert deep.status == 400
    assert deep.body["error"]["param"] == "expand"
    plain = await api(f"/v1/payment_intents/{intent}", params={"expand[]": "amount"}, account=account)
    assert plain.status == 400
    assert "cannot be expanded" in plain.body["error"]["message"]
