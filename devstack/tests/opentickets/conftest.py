"""Fixtures: an in-process sandbox on a free port and an HTTP client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import pytest

from devstack.opentickets.settings import SandboxSettings
from devstack.opentickets.testing import SandboxHandle, api_key_headers, run_sandbox

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    settings = SandboxSettings(orders=600, events=4, sales_per_hour=60)
    async with run_sandbox(settings=settings) as handle:
        yield handle


@pytest.fixture
def api_key(sandbox: SandboxHandle) -> dict[str, str]:
    return api_key_headers(sandbox.settings)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
