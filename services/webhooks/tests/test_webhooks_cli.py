"""The command line: what ``serve`` needs and how it starts; ``replay``'s arguments."""

from __future__ import annotations

import gc

from otcommon.runtime import SERVER_GC_THRESHOLDS
from webhooks.__main__ import EXIT_USAGE, build_parser, main


def test_serve_without_a_signing_secret_stops_with_the_variables_named(monkeypatch, capsys):
    monkeypatch.setenv("OT_COSMOS_CONNECTION_STRING", "AccountEndpoint=http://127.0.0.1:1/;AccountKey=a2V5;")
    monkeypatch.setenv(
        "OT_SERVICEBUS_CONNECTION_STRING",
        "Endpoint=sb://127.0.0.1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;",
    )
    monkeypatch.delenv("OT_WEBHOOKS_PLATFORM_SECRETS", raising=False)
    monkeypatch.delenv("OT_WEBHOOKS_CONNECT_SECRETS", raising=False)
    assert main(["serve"]) == EXIT_USAGE
    assert "OT_WEBHOOKS_PLATFORM_SECRETS" in capsys.readouterr().err


def test_replay_takes_an_event_id():
    assert build_parser().parse_args(["replay", "evt_1"]).event_id == "evt_1"


def serving_env(monkeypatch) -> None:
    monkeypatch.setenv("OT_COSMOS_CONNECTION_STRING", "AccountEndpoint=http://127.0.0.1:1/;AccountKey=a2V5;")
    monkeypatch.setenv(
        "OT_SERVICEBUS_CONNECTION_STRING",
        "Endpoint=sb://127.0.0.1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;",
    )
    monkeypatch.setenv("OT_WEBHOOKS_PLATFORM_SECRETS", "whsec_cli")
    # The process-wide providers are set once per process: not by a test of the command line.
    for name in ("configure_logging", "configure_tracing", "configure_metrics"):
        monkeypatch.setattr(f"webhooks.__main__.{name}", lambda **_: None)


def test_serve_collects_cycles_less_often_than_the_default(monkeypatch):
    serving_env(monkeypatch)
    seen: dict[str, object] = {}

    def run_app(app, **options):
        del app
        seen["thresholds"], seen["port"] = gc.get_threshold(), options["port"]

    monkeypatch.setattr("webhooks.__main__.web.run_app", run_app)
    before = gc.get_threshold()
    try:
        assert main(["serve"]) == 0
    finally:
        gc.set_threshold(*before)
    # With the default thresholds the collector took 5% of an answering process's CPU.
    assert seen == {"thresholds": SERVER_GC_THRESHOLDS, "port": 8082}


def test_serve_with_apply_processes_starts_the_set_of_processes(monkeypatch):
    serving_env(monkeypatch)
    monkeypatch.setenv("OT_WEBHOOKS_APPLY_PROCESSES", "1")
    started: list[tuple[int, int]] = []

    def serve_processes(count: int, *, apply_count: int) -> int:
        started.append((count, apply_count))
        return 0

    monkeypatch.setattr("webhooks.__main__.serve_processes", serve_processes)
    assert main(["serve"]) == 0
    assert started == [(1, 1)]


def test_an_apply_process_with_unreadable_pipes_stops_with_the_variable_named(monkeypatch, capsys):
    serving_env(monkeypatch)
    monkeypatch.setenv("OT_WEBHOOKS_APPLY_FROM_FDS", "3,four")
    assert main(["serve"]) == EXIT_USAGE
    assert "OT_WEBHOOKS_APPLY_FROM_FDS" in capsys.readouterr().err
