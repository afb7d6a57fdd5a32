"""Content hashes that let writers skip documents whose content did not change."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

CONTENT_HASH_FIELD = "contentHash"


def content_hash(document: Mapping[str, Any]) -> str:
    """SHA-256 of the document's content: keys sorted, system fields (``_*``) and the hash itself left out."""
    content = {k: v for k, v in document.items() if not k.startswith("_") and k != CONTENT_HASH_FIELD}
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()
