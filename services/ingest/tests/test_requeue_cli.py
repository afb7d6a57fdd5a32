"""``python -m ingest requeue --state`` offers the enrichment states of otcommon.enrichment, no others."""

from __future__ import annotations

import pytest

from ingest.__main__ import build_parser
from otcommon.enrichment import EnrichmentState


@pytest.mark.parametrize("state", list(EnrichmentState))
def test_requeue_accepts_every_enrichment_state(state: EnrichmentState):
    assert build_parser().parse_args(["requeue", "--state", state.value]).state == state


def test_requeue_refuses_a_state_that_does_not_exist(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["requeue", "--state", "retrying"])
    assert "invalid choice: 'retrying'" in capsys.readouterr().err
