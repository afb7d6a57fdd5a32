"""The runnable entry: one ready line naming host and port, and a clean exit on SIGTERM and SIGINT."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.servicebus.testing import free_port, running_emulator, stop_emulator

pytestmark = pytest.mark.integration

TEST_CONFIG = Path(__file__).parent / "Config.test.json"


def test_sigterm_stops_cleanly_with_exit_code_0():
    with running_emulator(TEST_CONFIG) as emulator:
        process = emulator.process
        assert stop_emulator(process) == 0


def test_sigint_stops_cleanly_and_ready_line_names_host_and_port():
    port = free_port()
    command = [sys.executable, "-m", "devstack.servicebus", "--config", str(TEST_CONFIG), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.startswith("servicebus emulator ready")
        assert f"127.0.0.1:{port}" in ready
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""  # exactly one line on stdout
        assert "Traceback" not in (process.stderr.read() if process.stderr else "")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_port_in_use_is_reported_without_a_traceback():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [
            sys.executable,
            "-m",
            "devstack.servicebus",
            "--config",
            str(TEST_CONFIG),
            "--port",
            str(port),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
