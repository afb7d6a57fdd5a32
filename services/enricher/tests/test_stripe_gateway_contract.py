"""The StripeGateway contract on the in-memory fake and on the real gateway against the Stripe sandbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from stripe_shapes import PLATFORM
from world import DAY, T_NOW, new_world

from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.testing import run_stripe_sandbox
from enricher.stripe_api import StripeApiGateway

pytest.register_assert_rewrite("stripe_gateway_contract")
from stripe_gateway_contract import StripeFacts, StripeGatewayContract  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ORG = "acct_org0000"


class TestFakeStripeGateway(StripeGatewayContract):
    @pytest.fixture
    def stripe_facts(self) -> StripeFacts:
        world = new_world(connected=3)
        world.stripe.page_size = 2  # every listing of more than two objects pages
        created = {}
        for n in range(5):
            charge_id, _, _ = world.charge_on(None, created=T_NOW - (n + 1) * 3600)
            created[charge_id] = T_NOW - (n + 1) * 3600
        direct, intent, direct_txn = world.charge_on(ORG)
        _, _, second_txn = world.charge_on(ORG)
        _, _, third_txn = world.charge_on(ORG)
        payout_id = world.pay_out([direct_txn, second_txn, third_txn], on=ORG)
        later = world.pay_out([], on=ORG, created=T_NOW - DAY // 2)
        separate = world.destination_charge(ORG, separate=True, created=T_NOW - 6 * 3600)
        destination = world.destination_charge(ORG, created=T_NOW - 7 * 3600)  # its transfer is in no group
        created |= {separate["charge"]: T_NOW - 6 * 3600, destination["charge"]: T_NOW - 7 * 3600}
        assert intent is not None
        return StripeFacts(
            gateway=world.stripe,
            platform_id=PLATFORM,
            connected=frozenset(world.stripe.connected),
            busy_account=None,
            charges_created=created,
            direct_charge=(ORG, direct),
            direct_intent=intent,
            payout=(ORG, payout_id, frozenset({direct_txn, second_txn, third_txn})),
            payouts=frozenset({payout_id, later}),
            bank=(ORG, f"ba_{ORG}", ORG[-4:]),
            separate_transfer=(
                separate["charge"],
                f"order_{separate['transfer']}",
                separate["transfer"],
                ORG,
            ),
        )


@pytest.mark.integration
class TestSandboxStripeGateway(StripeGatewayContract):
    @pytest.fixture
    async def stripe_facts(self) -> AsyncIterator[StripeFacts]:
        settings = StripeSandboxSettings(orders=300, rate_limit_per_second=10_000)
        async with run_stripe_sandbox(settings=settings) as sandbox:
            world = sandbox.world
            platform = world.platform_account_id
            owner = world.owner
            direct = next(
                facts
                for facts in world.payments.values()
                if str(facts.route) == "direct" and facts.payment_intent_id
            )
            payout_id, carried = next(
                (payout_id, carried)
                for payout_id, carried in sorted(world.payout_balance_transactions.items())
                if carried and owner[payout_id] != platform
            )
            payout_account = owner[payout_id]
            bank = next(bank for bank in world.bank_accounts.values() if bank["account"] != platform)
            separate = next(f for f in world.payments.values() if str(f.route) == "separate_transfer")
            gateway = StripeApiGateway(
                api_key=settings.secret_key, api_base=sandbox.base_url, requests_per_second=1_000
            )
            try:
                yield StripeFacts(
                    gateway=gateway,
                    platform_id=platform,
                    connected=frozenset(a for a in world.accounts if a != platform),
                    busy_account=None,
                    charges_created={
                        c: o["created"] for c, o in world.charges.items() if owner[c] == platform
                    },
                    direct_charge=(direct.account_id, direct.charge_id),
                    direct_intent=str(direct.payment_intent_id),
                    payout=(payout_account, payout_id, frozenset(carried)),
                    payouts=frozenset(p for p in world.payouts if owner[p] == payout_account),
                    bank=(bank["account"], bank["id"], bank["last4"]),
                    separate_transfer=(
                        separate.charge_id,
                        world.charges[separate.charge_id]["transfer_group"],
                        str(separate.transfer_id),
                        str(separate.destination_account_id),
                    ),
                )
            finally:
                await gateway.close()
