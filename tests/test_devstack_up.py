"""System test: `python -m devstack up` starts the stand-ins, provisions them and stops cleanly."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from system_processes import lines_until, started

pytestmark = pytest.mark.integration


def descendants(pid: int) -> set[int]:
    """Every live process whose ancestry includes ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


# Every stand-in and service starts in turn, then the first sync is enriched: on a busy 2-core
# machine that outlasts the default bound.
@pytest.mark.timeout(300)
def test_up_prints_settings_and_sigterm_leaves_no_process_behind():
    command = [
        sys.executable, "-m", "devstack", "up",
        "--cosmos-port", "0", "--servicebus-port", "0", "--opentickets-port", "0", "--stripe-port", "0",
        "--ingest-port", "0", "--webhooks-port", "0", "--enricher-port", "0", "--query-api-port", "0",
        "--orders", "60", "--database", "systest",
    ]  # fmt: skip
    with started(command) as process:
        text = lines_until(process, "Press Ctrl-C")
        assert "devstack: ready" in text, text
        assert re.search(
            r"export OT_COSMOS_CONNECTION_STRING='AccountEndpoint=http://127\.0\.0\.1:\d+/;", text
        )
        assert "transactions (created)" in text
        queued = re.search(r"first sync: 60 rows read, 60 stored, (\d+) payments queued", text)
        assert queued, text
        # The enricher consumed what the first sync queued: every payment enriched, counted by route
        # and by deposit status.
        enriched = re.search(
            r"(\d+) of (\d+) payments enriched; by route: (.+); by Stripe route: (.+); "
            r"by deposit status: (.+); unresolved: 0\n",
            text,
        )
        assert enriched, text
        assert enriched[1] == enriched[2] == queued[1]
        routes, stripe_routes, deposits = (
            dict(part.rsplit(" ", 1) for part in g.split(", ")) for g in enriched.group(3, 4, 5)
        )
        assert set(routes) == {"connected", "platform"}
        # Every route of the sandbox's world came out enriched, separate charges and transfers too.
        assert set(stripe_routes) == {"platform", "destination", "separate_transfer", "direct"}
        assert stripe_routes["platform"] == routes["platform"]
        counts = (routes, stripe_routes, deposits)
        assert {sum(map(int, c.values())) for c in counts} == {int(queued[1])}
        assert set(deposits) <= {"paid", "pending", "failed", "not_traceable"}
        assert re.search(r"enricher +http://127\.0\.0\.1:\d+", text), text
        assert "export OT_SERVICEBUS_CONNECTION_STRING='Endpoint=sb://localhost:" in text
        assert re.search(r"stripe +http://127\.0\.0\.1:\d+ \(key sk_test_\w+\)", text), text
        assert re.search(r"export OT_STRIPE_API_KEY='sk_test_\w+'", text), text
        assert re.search(r"webhooks +http://127\.0\.0\.1:\d+/api/webhooks/stripe", text), text
        assert "the Stripe sandbox delivers platform and Connect events to" in text
        assert_the_printed_query_token_works(text)
        children = descendants(process.pid)
        assert children, "the Cosmos DB stand-in should run as a child process"
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "devstack: stopped" in rest
    time.sleep(0.2)
    assert not {pid for pid in children if Path(f"/proc/{pid}").exists()}


def assert_the_printed_query_token_works(text: str) -> None:
    """The query API serves the first sync's orders to the token `make run` prints."""
    url = re.search(r"query-api +(http://\S+)", text)
    token = re.search(r"query-token +(\S+)", text)
    assert url, text
    assert token, text
    analytics = f"{url.group(1)}/api/analytics"
    request = urllib.request.Request(analytics, headers={"Authorization": f"Bearer {token.group(1)}"})  # noqa: S310 - the loopback URL it printed
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the same
        assert json.load(response)["ordersCount"] == 60


def test_a_busy_port_fails_with_a_clear_message():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "devstack", "up", "--cosmos-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "cosmos did not become ready" in result.stderr
    assert "EADDRINUSE" in result.stderr


def test_sigterm_while_starting_stops_what_was_started():
    command = [
        sys.executable, "-m", "devstack", "up",
        "--cosmos-port", "0", "--servicebus-port", "0", "--opentickets-port", "0", "--stripe-port", "0",
        "--ingest-port", "0", "--webhooks-port", "0", "--query-api-port", "0", "--orders", "200000",
        "--database", "interrupted",
    ]  # fmt: skip
    with started(command) as process:
        lines_until(process, "starting the OpenTickets sandbox")
        time.sleep(1.0)  # the sandbox is building its 200,000 orders now
        children = descendants(process.pid)
        assert children, "the stand-ins started so far run as child processes"
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted while starting" in rest
    time.sleep(0.2)
    assert not {pid for pid in children if Path(f"/proc/{pid}").exists()}
