"""`python -m devstack stripe` as a process: the ready line with URL and key, a real call, a clean stop."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import aiohttp
import pytest

pytestmark = pytest.mark.integration

READY = re.compile(r"^stripe-sandbox ready on (?P<url>http://127\.0\.0\.1:\d+) key (?P<key>\S+)$")


async def test_the_command_serves_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "devstack", "stripe", "--port", "0", "--orders", "50"),
        *("--secret-key", "sk_test_p"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ready = READY.match((await asyncio.wait_for(process.stdout.readline(), 60)).decode().strip())
        assert ready is not None
        assert ready["key"] == "sk_test_p"
        headers = {"Authorization": f"Bearer {ready['key']}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{ready['url']}/v1/account", headers=headers) as answer,
        ):
            assert answer.status == 200
            assert (await answer.json())["object"] == "account"
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_an_unknown_permission_is_refused_at_start() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack",
            "stripe",
            "--port",
            "0",
            "--restricted-permissions",
            "charges,teleport",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "teleport" in result.stderr
