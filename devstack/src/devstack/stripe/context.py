"""Who is asking: the API key presented and the account it acts as (`Stripe-Account`, else the platform)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from devstack.stripe.keys import ApiKey, require_permission


@dataclass(frozen=True, slots=True)
class Caller:
    """The key of one request and the account whose objects it reads."""

    key: ApiKey
    account_id: str
    platform_account_id: str

    @property
    def is_platform(self) -> bool:
        """Whether the request acts as the platform itself."""
        return self.account_id == self.platform_account_id

    def require(self, resource: str) -> None:
        """A 403 unless this key may read `resource`."""
        require_permission(self.key, resource, account_id=self.account_id)


CALLER_KEY = web.RequestKey("caller", Caller)


def caller(request: web.Request) -> Caller:
    """The caller the authentication middleware found."""
    return request[CALLER_KEY]
