"""The command line refuses to serve without a signing secret, naming the variables."""

from __future__ import annotations

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
