"""`python -m query_api token` and the settings it reads from the environment."""

from __future__ import annotations

import jwt
import pytest
from query_api_support import AUDIENCE, ISSUER, SECRET

from query_api.__main__ import main
from query_api.settings import QueryApiSettings

BASE_ENVIRONMENT = {
    "OT_COSMOS_ENDPOINT": "http://127.0.0.1:1/",
    "OT_SERVICEBUS_CONNECTION_STRING": (
        "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true;"
    ),
}


@pytest.fixture
def environment(monkeypatch):
    for name, value in BASE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_token_prints_a_scoped_token_the_api_accepts(environment, capsys):
    environment.setenv("OT_QUERY_API_JWT_SECRET", SECRET)
    assert main(["token", "--events", "ev1", "ev2", "--hours", "2"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert (claims["iss"], claims["events"], claims["exp"] - claims["iat"]) == (ISSUER, ["ev1", "ev2"], 7200)

    assert main(["token"]) == 0
    assert "events" not in jwt.decode(
        capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"], audience=AUDIENCE
    )


def test_token_without_a_secret_says_which_variable_to_set(environment, capsys):
    environment.setenv("OT_QUERY_API_JWKS_URL", "https://login.example/keys")
    assert main(["token"]) == 2
    assert "OT_QUERY_API_JWT_SECRET" in capsys.readouterr().err


def test_settings_need_a_key_source_and_read_origins_as_a_list(environment, capsys):
    assert main(["token"]) == 2
    assert "OT_QUERY_API_JWKS_URL" in capsys.readouterr().err

    environment.setenv("OT_QUERY_API_JWT_SECRET", SECRET)
    environment.setenv("OT_QUERY_API_CORS_ORIGINS", "https://dash.example/, http://localhost:5173")
    config = QueryApiSettings()
    assert config.query_api_cors_origins == ("https://dash.example", "http://localhost:5173")
    assert config.query_api_http_port == 8084
