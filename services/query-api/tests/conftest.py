from __future__ import annotations

import pytest

from query_api.readmodel import ReadModel


@pytest.fixture
def model() -> ReadModel:
    return ReadModel()
