"""The HTTP layer: each endpoint answers from the read model, refuses bad parameters by name, caches."""

from __future__ import annotations

from query_api_support import bearer, serving, token
from query_documents import transaction

from otcommon.http import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE

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
            "/api/analytics?include=everything": "include",
            "/api/analytics?tz=Mars/Olympus": "tz",
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
