"""Typed keys for what the application stores."""

from __future__ import annotations

from aiohttp import web

from devstack.opentickets.state import SandboxState

STATE_KEY = web.AppKey("state", SandboxState)
