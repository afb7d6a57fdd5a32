"""Unit tests: topology parsing and validation (no server)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from devstack.servicebus.cli import main
from devstack.servicebus.config import ConfigError, load_topology, parse_duration, parse_topology

PROJECT_CONFIG = Path(__file__).parents[3] / "deploy" / "servicebus" / "Config.json"


def _document(queues=None, topics=None):
    return {"UserConfig": {"Namespaces": [{"Name": "ns", "Queues": queues or [], "Topics": topics or []}]}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT1M", timedelta(minutes=1)),
        ("PT1H", timedelta(hours=1)),
        ("P1D", timedelta(days=1)),
        ("P14D", timedelta(days=14)),
        ("PT0.5S", timedelta(seconds=0.5)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("P2W", timedelta(weeks=2)),
    ],
)
def test_iso_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["1M", "PT", "P", "P1Y", "PT1X", "", "P1DT"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_duration(text)


def test_project_topology_declares_the_agreed_entities():
    topology = load_topology(PROJECT_CONFIG)
    assert topology.namespace == "sbemulatorns"
    queues = {queue.name: queue.properties for queue in topology.queues}
    assert set(queues) == {"stripe-enrichment-queue", "stripe-events-queue", "payout-trace-queue"}
    enrichment = queues["stripe-enrichment-queue"]
    assert enrichment.requires_duplicate_detection
    assert enrichment.duplicate_detection_history_time_window == timedelta(days=1)
    assert enrichment.lock_duration == timedelta(minutes=1)
    assert enrichment.max_delivery_count == 10
    assert enrichment.dead_lettering_on_message_expiration
    assert queues["stripe-events-queue"].requires_duplicate_detection
    assert queues["stripe-events-queue"].duplicate_detection_history_time_window == timedelta(days=1)
    assert queues["payout-trace-queue"].requires_duplicate_detection
    [topic] = topology.topics
    assert topic.name == "transaction-changes"
    subscriptions = {sub.name: sub for sub in topic.subscriptions}
    assert set(subscriptions) == {"query-api-live", "audit"}
    # Each subscription's one rule keeps the other subscriptions' retries out (see otcommon.bus.routing).
    assert [rule.name for rule in subscriptions["query-api-live"].rules] == ["new-or-own-retries"]
    assert [rule.name for rule in subscriptions["audit"].rules] == ["new-or-own-retries"]
    assert subscriptions["audit"].properties.max_delivery_count == 5


def test_defaults_follow_azure():
    topology = parse_topology(_document(queues=[{"Name": "q"}]))
    [queue] = topology.queues
    assert queue.properties.lock_duration == timedelta(minutes=1)
    assert queue.properties.max_delivery_count == 10
    assert not queue.properties.requires_session


def test_error_names_the_path_of_the_bad_field():
    document = _document(
        queues=[{"Name": "a"}, {"Name": "b"}, {"Name": "c", "Properties": {"LockDuration": "one minute"}}]
    )
    with pytest.raises(ConfigError) as caught:
        parse_topology(document)
    assert str(caught.value).startswith("UserConfig.Namespaces[0].Queues[2].Properties.LockDuration: ")
    assert "'one minute' is not an ISO 8601 duration" in str(caught.value)


@pytest.mark.parametrize(
    ("document", "path"),
    [
        (_document(queues=[{"Name": "q", "Properties": {"MaxDeliveryCount": 0}}]),
         "UserConfig.Namespaces[0].Queues[0].Properties.MaxDeliveryCount"),
        (_document(queues=[{"Name": "q", "Properties": {"LockDurations": "PT1M"}}]),
         "UserConfig.Namespaces[0].Queues[0].Properties.LockDurations"),
        (_document(queues=[{"Name": "q"}, {"Name": "Q"}]), "UserConfig.Namespaces[0].Queues[1].Name"),
        (_document(queues=[{"Name": "q", "Properties": {"ForwardTo": "nowhere"}}]),
         "UserConfig.Namespaces[0].Queues[0].Properties.ForwardTo"),
        (_document(topics=[{"Name": "t", "Subscriptions": [{"Name": "s", "Rules": [
            {"Name": "r", "Properties": {"FilterType": "Sql", "SqlFilter": {"SqlExpression": "a = "}}}]}]}]),
         "UserConfig.Namespaces[0].Topics[0].Subscriptions[0].Rules[0].Properties.SqlFilter.SqlExpression"),
        (_document(topics=[{"Name": "t", "Subscriptions": [{"Name": "s", "Rules": [
            {"Name": "r", "Properties": {"FilterType": "Sql", "SqlFilter": {"SqlExpression": "a = 1"},
                                         "Action": {"SqlExpression": "DROP a"}}}]}]}]),
         "UserConfig.Namespaces[0].Topics[0].Subscriptions[0].Rules[0].Properties.Action.SqlExpression"),
        (_document(topics=[{"Name": "t", "Subscriptions": [{"Name": "s", "Rules": [
            {"Name": "r", "Properties": {"FilterType": "Correlation"}}]}]}]),
         "UserConfig.Namespaces[0].Topics[0].Subscriptions[0].Rules[0].Properties"),
        ({"UserConfig": {"Namespaces": []}}, "UserConfig.Namespaces"),
    ],
)  # fmt: skip
def test_each_kind_of_error_names_its_path(document, path):
    with pytest.raises(ConfigError) as caught:
        parse_topology(document)
    assert str(caught.value).startswith(f"{path}: ")


def test_cli_reports_config_errors_with_exit_code_2_and_no_traceback(tmp_path, capsys):
    config = tmp_path / "Config.json"
    config.write_text(json.dumps(_document(queues=[{"Name": "q", "Properties": {"LockDuration": "PT1Z"}}])))
    assert main(["--config", str(config), "--port", "1"]) == 2
    error = capsys.readouterr().err
    assert "UserConfig.Namespaces[0].Queues[0].Properties.LockDuration: " in error
    assert "Traceback" not in error


def test_cli_reports_unreadable_and_invalid_json_files(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "missing.json"), "--port", "1"]) == 2
    assert "cannot read the config file" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    assert main(["--config", str(broken), "--port", "1"]) == 2
    assert "not valid JSON (line 1" in capsys.readouterr().err
