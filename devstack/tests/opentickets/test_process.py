"""The command line: ready line, serving, and a clean stop on SIGTERM."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devstack.opentickets.app import create_app
from devstack.opentickets.cli import main, settings_from_args
from devstack.opentickets.settings import SandboxSettings
from devstack.opentickets.testing import run_sandbox_process
from devstack.scenario import EXPORT_COLUMNS

if TYPE_CHECKING:
    import aiohttp


OPENAPI = Path(__file__).parents[2] / "openapi" / "opentickets.yaml"


@pytest.mark.integration
async def test_subprocess_serves_and_stops_cleanly(http: aiohttp.ClientSession) -> None:
    args = ["--orders", "50", "--seed", "3", "--fault-rate-5xx", "0.0", "--token-ttl", "30"]
    async with run_sandbox_process(args=args) as sandbox:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sandbox.base_url)
        async with http.get(f"{sandbox.base_url}/_sandbox/state") as response:
            state = await response.json()
        assert state["orders"] == 50
        assert state["seed"] == 3
    assert sandbox.process.returncode == 0


@pytest.mark.integration
def test_port_in_use_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port), "--orders", "5"]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_command_line_flags_become_settings() -> None:
    settings = settings_from_args(
        [
            "--port", "8081", "--host", "127.0.0.1", "--seed", "9", "--orders", "10", "--events", "2",
            "--latency-ms", "15", "--fault-rate-429", "0.1", "--fault-rate-5xx", "0.2", "--drop-rate", "0.05",
            "--token-ttl", "5",
        ]
    )  # fmt: skip
    assert settings == SandboxSettings(
        port=8081, seed=9, orders=10, events=2, latency_ms=15, fault_rate_429=0.1, fault_rate_5xx=0.2,
        drop_rate=0.05, token_ttl=5,
    )  # fmt: skip


@pytest.mark.parametrize("bad", [["--port", "1", "--fault-rate-429", "1.5"], ["--port", "-3"], []])
def test_bad_flags_exit_with_usage_error(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        settings_from_args(bad)
    assert exit_info.value.code == 2


def test_openapi_contract_lists_every_route() -> None:
    text = OPENAPI.read_text(encoding="utf-8")
    assert text.startswith("openapi: 3.")
    app = create_app(SandboxSettings(orders=1))
    paths = {route.resource.canonical for route in app.router.routes() if route.resource is not None}
    for path in paths:
        assert f"\n  {path}:\n" in text, path


def test_openapi_transaction_lists_the_row_fields_in_order() -> None:
    text = OPENAPI.read_text(encoding="utf-8")
    block = text.split("\n    Transaction:\n", 1)[1].split("\n    TransactionPage:\n", 1)[0]
    properties = block.split("\n      properties:\n", 1)[1]
    names = re.findall(r"^        (\w+):$", properties, flags=re.MULTILINE)
    assert names == [*EXPORT_COLUMNS, "id", "eventId", "updatedAt"]
