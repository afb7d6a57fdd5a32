"""Typed keys for what the application stores."""

from __future__ import annotations

from aiohttp import web

from devstack.stripe.state import StripeSandboxState

STATE_KEY = web.AppKey("state", StripeSandboxState)
