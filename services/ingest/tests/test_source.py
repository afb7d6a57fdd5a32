"""The OpenTickets client against the sandbox: token refreshes, retries, and the errors they end in."""

from __future__ import annotations

import aiohttp
import pytest
from pydantic import SecretStr

from devstack.opentickets.testing import run_sandbox
from devstack.servicebus.testing import free_port
from ingest.source import (
    Credentials,
    OpenTicketsClient,
    RetryPolicy,
    SourceRequestError,
    SourceUnavailableError,
)

pytestmark = pytest.mark.integration

CLIENT = Credentials(client_id="sandbox-client", client_secret=SecretStr("sandbox-secret"))


def no_wait(attempts: int) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, base_delay_seconds=0.0, max_delay_seconds=0.0)


@pytest.fixture
async def sandbox():
    async with run_sandbox() as handle:
        yield handle


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def client(session: aiohttp.ClientSession, base_url: str, retry: RetryPolicy) -> OpenTicketsClient:
    return OpenTicketsClient(
        session=session, base_url=base_url, credentials=CLIENT, retry=retry, timeout_seconds=5
    )


async def test_a_token_refused_on_the_last_attempt_is_replaced_and_the_request_repeated(sandbox, session):
    sandbox.faults.update(next_expired_token=1)
    source = client(session, sandbox.base_url, no_wait(1))
    assert await source.events()
    assert (source.token_refreshes, source.retries) == (1, 0)


async def test_token_refreshes_do_not_use_up_retry_attempts(sandbox, session):
    # One 503 uses one of the two attempts; the two refused tokens after it use none.
    sandbox.faults.update(next_5xx=1, next_expired_token=2)
    source = client(session, sandbox.base_url, no_wait(2))
    assert await source.events()
    assert (source.token_refreshes, source.retries) == (2, 1)


async def test_a_token_refused_every_time_fails_with_the_servers_401(sandbox, session):
    sandbox.faults.update(next_expired_token=100)
    source = client(session, sandbox.base_url, no_wait(3))
    with pytest.raises(SourceRequestError, match="access token expired") as raised:
        await source.events()
    assert raised.value.status == 401
    assert "check the credentials" in str(raised.value)
    assert source.token_refreshes == 3


async def test_an_unreachable_token_endpoint_fails_naming_the_connection_error(session):
    source = client(session, f"http://127.0.0.1:{free_port()}", no_wait(2))
    with pytest.raises(SourceUnavailableError, match="/oauth/token: gave up after 2 attempts") as raised:
        await source.events()
    assert "ClientConnectorError" in str(raised.value)
    assert isinstance(raised.value.__cause__, aiohttp.ClientConnectionError)


def test_a_retry_policy_without_attempts_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(max_attempts=0)
