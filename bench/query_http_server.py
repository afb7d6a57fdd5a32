"""The query API served as ``python -m query_api serve`` serves it, its transactions read from a file.

    python bench/query_http_server.py PAGES.jsonl   (settings from the same OT_* variables)

For bench_query_http.py at sizes the Cosmos DB stand-in cannot serve: its ``SELECT * FROM c`` costs
grow faster than the square of the container's size (see services/query-api/DESIGN.md), so a million
documents never finish loading from it. Here every line of the file is one page of documents as the
start-up load reads them (1,000 a page, JSON); each is decoded as the SDK decodes a page and handed to
the same load (``create_app``'s own, without a change feed). The app, its middlewares, routes and read
model are the deployed ones. The time spent reading and decoding the file is logged when drained.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from otcommon.settings import load_settings
from otcommon.store import QueryPage
from otcommon.telemetry import configure_logging
from query_api.app import QuerySources, create_app
from query_api.settings import QueryApiSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = structlog.get_logger("bench.query_http_server")


class PagesFile:
    """The transactions container's start-up query, answered from a file of JSON pages."""

    def __init__(self, path: Path) -> None:
        self._path = path

    async def query(self, _query: str, **_options: Any) -> AsyncIterator[QueryPage]:
        """Each line is a page; decoded here as the SDK decodes an answer."""
        read_seconds = decode_seconds = 0.0
        pages = documents = 0
        with self._path.open("rb") as lines:
            while True:
                began = time.perf_counter()
                line = lines.readline()
                read_seconds += time.perf_counter() - began
                if not line:
                    break
                began = time.perf_counter()
                items = json.loads(line)
                decode_seconds += time.perf_counter() - began
                pages += 1
                documents += len(items)
                yield QueryPage(items=items, continuation=None)
                await asyncio.sleep(0)  # a Cosmos page is awaited: the loop runs between pages
        log.info(
            "bench source drained",
            pages=pages,
            documents=documents,
            read_seconds=round(read_seconds, 2),
            decode_seconds=round(decode_seconds, 2),
        )


def main() -> int:
    settings = load_settings(QueryApiSettings)
    configure_logging(level=settings.log_level, fmt=settings.log_format, service_name=settings.service_name)
    source = PagesFile(Path(sys.argv[1]))

    async def healthy() -> None:
        return None

    @asynccontextmanager
    async def sources(_: QueryApiSettings) -> AsyncIterator[QuerySources]:
        yield QuerySources(transactions=source, health_checks={"source": healthy})  # type: ignore[arg-type]

    web.run_app(
        create_app(settings, open_components=sources),
        host=settings.query_api_http_host,
        port=settings.query_api_http_port,
        print=None,
        shutdown_timeout=5.0,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
