"""Files of the repository that the stand-ins read."""

from __future__ import annotations

import os
from pathlib import Path


def project_topology() -> Path:
    """The project's Service Bus topology (the one source of truth for queues and topics)."""
    override = os.environ.get("OT_SERVICEBUS_TOPOLOGY")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "deploy" / "servicebus" / "Config.json"
