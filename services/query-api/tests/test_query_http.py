"""The HTTP layer: each endpoint answers from the read model, refuses bad parameters by name, caches."""

from __future__ import annotations

import asyncio

from query_api_support import bearer, serving, settings, token, transactions_container
from query_documents import transaction

from otcommon.http import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE
from query_api.routes import READ_SIDE

DOCUMENTS = [
    transaction(1, event="ev1", TotalAmount=10.0, TicketTypes="VIP"),
    transaction(2, event="ev1", TotalAmount=20.0, IsRefunded=True),
    transaction(3, event="ev2", TotalAmount=5.0, PurchaseFrom="boxOffice", Email="three@example.com"),
]


async def test_analytics_answers_the_metrics_of_the_filtered_rows():
    async with serving(DOCUMENTS) as client:
        response = await client.get("/api/analytics", headers=bearer(token()))
        body = await response.json()
        assert response.status == 200
        assert (body["ordersCount"], body["grossRevenue"], body["refundCount"]) == (3, 35.0, 1)
        assert "byTicketType" not in body

        response = await client.get(
            "/api/analytics?eventId=ev1&include=ticketTypes,sources", headers=bearer(token())
        )
        body = await response.json()
        assert body["ordersCount"] == 2
        assert {row["key"] for row in body["byTicketType"]} == {"vip", "general"}
        assert [row["key"] for row in body["bySource"]] == ["online"]


async def problem_of(response) -> dict:
    assert response.headers["Content-Type"].startswith(PROBLEM_CONTENT_TYPE)
    return await response.json()


async def test_unknown_and_bad_parameters_are_refused_naming_the_parameter():
    async with serving(DOCUMENTS) as client:
        cases = {
            "/api/analytics?evntId=ev1": "evntId",
            "/api/analytics?from=yesterday": "from",
            "/api/analytics?from=2026-05-02&to=2026-05-01": "to",
            "/api/analytics?from=2000-01-01&to=2026-05-01": "to",
            "/api/analytics?from=1969-12-31": "from",
            "/api/analytics?to=3000-01-01": "to",
            "/api/transactions?from=0001-01-01T00:00:00%2B05:00": "from",
            "/api/analytics?include=everything": "include",
            "/api/analytics?tz=Mars/Olympus": "tz",
            "/api/analytics?tz=America": "tz",
            "/api/analytics?tz=" + "x" * 300: "tz",
            "/api/analytics?refunded=yes": "refunded",
            "/api/analytics?source=web": "source",
            "/api/analytics?include=timeSeries&granularity=hour": "granularity",
            "/api/analytics?q=" + "x" * 201: "q",
            "/api/analytics?eventId=" + ",".join(f"e{n}" for n in range(101)): "eventId",
            "/api/transactions?pageSize=501": "pageSize",
            "/api/transactions?pageSize=-1": "pageSize",
            "/api/transactions?sort=Secret": "sort",
            "/api/transactions?cursor=garbage": "cursor",
            "/api/transactions?page=1&cursor=abc": "cursor",
            "/api/customers?order=up": "order",
            "/api/events?eventId=ev1": "eventId",
            "/api/transactions/tx1?x=1": "x",
        }
        for path, parameter in cases.items():
            response = await client.get(path, headers=bearer(token()))
            assert response.status == 400, path
            problem = await problem_of(response)
            assert problem["type"] == PROBLEM_TYPE_BASE + "invalid-parameter", path
            assert problem["parameter"] == parameter, path


async def test_analytics_carries_an_etag_and_an_unchanged_answer_is_a_304():
    async with serving(DOCUMENTS) as client:
        headers = bearer(token())
        first = await client.get("/api/analytics?include=events", headers=headers)
        etag = first.headers["ETag"]
        assert first.headers["Cache-Control"].startswith("private, max-age=")
        assert "Authorization" in first.headers["Vary"]

        again = await client.get("/api/analytics?include=events", headers={**headers, "If-None-Match": etag})
        assert again.status == 304
        assert again.headers["ETag"] == etag
        assert await again.read() == b""

        weak = await client.get(
            "/api/analytics?include=events", headers={**headers, "If-None-Match": f"W/{etag}"}
        )
        assert weak.status == 304
        other_query = await client.get(
            "/api/analytics?eventId=ev2", headers={**headers, "If-None-Match": etag}
        )
        assert other_query.status == 200
        assert other_query.headers["ETag"] != etag
        scoped = await client.get(
            "/api/analytics?include=events", headers={**bearer(token(events=["ev2"])), "If-None-Match": etag}
        )
        assert scoped.status == 200


DASHBOARD = "https://dashboard.example"


async def test_cors_allows_the_dashboard_origin_only_and_covers_errors_and_preflight():
    async with serving(
        DOCUMENTS, config=settings(query_api_cors_origins=DASHBOARD + "/, https://b.example")
    ) as client:
        preflight = await client.options(
            "/api/analytics",
            headers={
                "Origin": DASHBOARD,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization,if-none-match",
            },
        )
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == DASHBOARD
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        assert "GET" in preflight.headers["Access-Control-Allow-Methods"]

        refused = await client.options(
            "/api/analytics",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert refused.status == 403
        assert "Access-Control-Allow-Origin" not in refused.headers

        answer = await client.get("/api/analytics", headers={**bearer(token()), "Origin": DASHBOARD})
        assert answer.headers["Access-Control-Allow-Origin"] == DASHBOARD
        exposed = {name.strip() for name in answer.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"ETag", "Server-Timing"} <= exposed  # a dashboard's script reads both cross-origin
        assert "Origin" in answer.headers["Vary"]

        unauthorized = await client.get("/api/transactions", headers={"Origin": DASHBOARD})
        assert unauthorized.status == 401
        assert unauthorized.headers["Access-Control-Allow-Origin"] == DASHBOARD
        assert "WWW-Authenticate" in unauthorized.headers["Access-Control-Expose-Headers"]

        other = await client.get(
            "/api/analytics", headers={**bearer(token()), "Origin": "https://evil.example"}
        )
        assert "Access-Control-Allow-Origin" not in other.headers


class GatedContainer:
    """The transactions container whose start-up query waits until the test opens the gate."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.gate = asyncio.Event()

    async def query(self, text, **arguments):
        await self.gate.wait()
        async for page in self._inner.query(text, **arguments):
            yield page


async def test_not_ready_and_503_until_the_read_model_is_loaded():
    container = GatedContainer(await transactions_container(DOCUMENTS))
    async with serving(DOCUMENTS, loaded=False, container=container) as client:
        assert (await client.get("/healthz")).status == 200
        not_ready = await client.get("/readyz")
        assert not_ready.status == 503
        assert (await not_ready.json())["dependencies"]["readModel"]["ok"] is False
        loading = await client.get("/api/analytics", headers=bearer(token()))
        assert loading.status == 503
        assert loading.headers["Retry-After"]

        container.gate.set()
        await client.app[READ_SIDE].wait_loaded()
        assert (await client.get("/readyz")).status == 200
        assert (await (await client.get("/api/analytics", headers=bearer(token()))).json())[
            "ordersCount"
        ] == 3


async def test_tables_detail_routes_and_the_event_catalog():
    async with serving(DOCUMENTS) as client:
        headers = bearer(token())
        first = await (
            await client.get("/api/transactions?sort=TotalAmount&order=desc&pageSize=2", headers=headers)
        ).json()
        assert [row["id"] for row in first["rows"]] == ["tx2", "tx1"]
        assert (first["total"], first["page"], first["pageSize"]) == (3, 0, 2)
        rest = await (
            await client.get(
                f"/api/transactions?sort=TotalAmount&order=desc&pageSize=2&cursor={first['nextCursor']}",
                headers=headers,
            )
        ).json()
        assert [row["id"] for row in rest["rows"]] == ["tx3"]
        assert (rest["page"], rest["nextCursor"]) == (None, None)
        second_page = await (
            await client.get(
                "/api/transactions?sort=TotalAmount&order=desc&pageSize=2&page=1", headers=headers
            )
        ).json()
        assert [row["id"] for row in second_page["rows"]] == ["tx3"]
        searched = await (await client.get("/api/transactions?q=THREE@", headers=headers)).json()
        assert [row["id"] for row in searched["rows"]] == ["tx3"]

        detail = await (await client.get("/api/transactions/tx3", headers=headers)).json()
        assert (detail["id"], detail["Email"], detail["PurchaseFrom"]) == (
            "tx3",
            "three@example.com",
            "boxOffice",
        )
        assert (await client.get("/api/transactions/nope", headers=headers)).status == 404

        customers = await (
            await client.get("/api/customers?sort=totalSpent&order=desc", headers=headers)
        ).json()
        assert [row["totalSpent"] for row in customers["rows"]] == [20.0, 10.0, 5.0]
        buyer = await (
            await client.get(f"/api/customers/{customers['rows'][2]['id']}", headers=headers)
        ).json()
        assert buyer["customer"]["email"] == "three@example.com"
        assert [row["id"] for row in buyer["transactions"]] == ["tx3"]

        catalog = await (await client.get("/api/events", headers=headers)).json()
        assert [
            (e["eventId"], e["eventName"], e["ordersCount"], e["grossRevenue"]) for e in catalog["events"]
        ] == [
            ("ev1", "Event ev1", 2, 30.0),
            ("ev2", "Event ev2", 1, 5.0),
        ]
