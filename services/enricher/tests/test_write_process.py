"""The write process: the transactions written by a child process, as the enricher would write them.

The protocol's lines on their own; then ``WriteProcess`` with the real child
(``python -m enricher.write_process``) on the Cosmos DB stand-in: the same writes and answers as in
process, a child killed (its payments retried, the child started again), a child that cannot start,
a stop that lets the writes begun finish. Children that answer badly on purpose (tiny scripts) pin
how the enricher maps what it hears.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pathlib
import signal
import sys
import textwrap

import pytest
from test_handler import Setup, order
from world import NOW

from devstack.testing import fresh_database
from enricher.findings import ENRICHER_FIELDS
from enricher.handler import EnrichmentHandler
from enricher.remote_writer import WriteFailedError, WriteProcess, WriteProcessUnavailableError
from enricher.service import PaymentEnricher
from enricher.settings import EnricherSettings
from enricher.write_process import child_environment
from enricher.write_protocol import (
    ETAG_MISMATCH,
    FAILED,
    MalformedLineError,
    WriteAnswer,
    WriteFailure,
    WriteRequest,
    decode_answer,
    decode_request,
    encode_answer,
    encode_request,
    request_number,
)
from enricher.writer import WrittenTransaction
from otcommon.bus import RetryableError
from otcommon.payment_transactions import (
    listed_transactions,
    payment_transactions_key,
    payment_transactions_partition,
)
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer, EtagMismatchError

ORG = "acct_org0000"
CHARGE = "stripeChargeId"
FIELDS = {"stripeRouteType": "platform", "enrichmentState": "enriched", "stripeChargeId": "ch_1"}


# -- the lines -----------------------------------------------------------------------------------------


def test_a_request_and_its_answers_survive_their_lines():
    request = WriteRequest(
        7, "pi_1", {"depositStatus": "pending", "stripeNetAmount": 10.5, "depositDate": None}
    )
    assert decode_request(encode_request(request)) == request
    written = [
        WrittenTransaction("t1", "ev1", ("depositStatus", "stripeNetAmount"), "2026-12-01T00:00:00Z"),
        WrittenTransaction("t2", "ev2", (), None),
    ]
    for answer in (
        WriteAnswer(7, written=written),
        WriteAnswer(8, written=[]),
        WriteAnswer(9, failure=WriteFailure(ETAG_MISMATCH, container="transactions", document_id="t1")),
        WriteAnswer(10, failure=WriteFailure(FAILED, description="CosmosHttpResponseError: 503")),
    ):
        line = encode_answer(answer)
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1
        assert decode_answer(line) == answer


@pytest.mark.parametrize(
    "line",
    [
        b"not json\n",
        b"[1, 2]\n",
        b'{"paymentId": "pi_1", "fields": {}}\n',
        b'{"n": true, "paymentId": "pi_1", "fields": {}}\n',
        b'{"n": 1, "paymentId": 5, "fields": {}}\n',
        b'{"n": 1, "paymentId": "pi_1", "fields": []}\n',
    ],
)
def test_a_line_that_is_no_request_is_refused_with_the_reason(line):
    with pytest.raises(MalformedLineError):
        decode_request(line)


def test_a_refused_request_still_names_its_number_when_it_has_one():
    assert request_number(b'{"n": 4, "fields": []}\n') == 4
    assert request_number(b"garbage\n") is None
    assert request_number(b'{"n": "4"}\n') is None


@pytest.mark.parametrize(
    "line",
    [
        b'{"written": []}\n',
        b'{"n": 1}\n',
        b'{"n": 1, "error": "exploded"}\n',
        b'{"n": 1, "written": [{"id": "t1"}]}\n',
    ],
)
def test_a_line_that_is_no_answer_is_refused(line):
    with pytest.raises(MalformedLineError):
        decode_answer(line)


def test_the_child_runs_on_the_enrichers_settings_not_on_stale_inherited_ones(monkeypatch):
    settings = EnricherSettings(
        cosmos_endpoint="http://127.0.0.1:9/",
        cosmos_key="a2V5",
        cosmos_database="built-in-code",
        servicebus_connection_string="Endpoint=sb://127.0.0.1;SharedAccessKeyName=k;SharedAccessKey=v",
        enricher_coalesce_linger_seconds=0.05,
    )
    inherited = {
        "PATH": "/bin",
        "OT_COSMOS_CONNECTION_STRING": "AccountEndpoint=http://elsewhere/;AccountKey=eA==;",
        "ot_cosmos_database": "stale",  # read whatever its case
        "OT_ENRICHER_COALESCE_LINGER_SECONDS": "0.5",
        "OT_STRIPE_API_KEY": "sk_test_notforthechild",
        "OT_SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://127.0.0.1;SharedAccessKeyName=k;SharedAccessKey=v",
    }
    env = child_environment(settings, inherited=inherited)
    assert env["PATH"] == "/bin"
    assert {"OT_COSMOS_CONNECTION_STRING", "ot_cosmos_database", "OT_STRIPE_API_KEY"}.isdisjoint(env)
    assert "SharedAccessKey" not in str(env)  # no secret the write process does not use
    assert (env["OT_COSMOS_ENDPOINT"], env["OT_COSMOS_KEY"], env["OT_COSMOS_DATABASE"]) == (
        "http://127.0.0.1:9/",
        "a2V5",
        "built-in-code",
    )
    assert env["OT_ENRICHER_COALESCE_LINGER_SECONDS"] == "0.05"
    # What the child reads back is what the enricher runs on.
    for name in [name for name in os.environ if name.upper().startswith(("OT_", "OTEL_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    read_back = EnricherSettings()
    assert read_back.cosmos == settings.cosmos
    assert read_back.enricher_coalesce_linger_seconds == 0.05


# -- children that answer as told ------------------------------------------------------------------------

READY_THEN = """
import json, sys
sys.stdout.write('{"ready":true}\\n'); sys.stdout.flush()
for line in sys.stdin:
    number = json.loads(line)["n"]
%s
    sys.stdout.flush()
"""


def scripted_child(body: str) -> WriteProcess:
    script = READY_THEN % textwrap.indent(textwrap.dedent(body), "    ")
    return WriteProcess(command=(sys.executable, "-c", script), restart_delay_seconds=0.05)


async def test_a_lost_etag_race_in_the_child_is_the_same_error_here():
    process = scripted_child(
        """
        answer = {"n": number, "error": "etag-mismatch", "container": "transactions", "documentId": "t9"}
        sys.stdout.write(json.dumps(answer) + "\\n")
        """
    )
    await process.start()
    try:
        with pytest.raises(EtagMismatchError) as raised:
            await process.apply(payment_id="pi_1", fields=FIELDS)
        assert (raised.value.container, raised.value.document_id) == ("transactions", "t9")
    finally:
        await process.close()


async def test_any_other_failure_in_the_child_is_a_failed_write_with_its_description():
    process = scripted_child(
        """
        answer = {"n": number, "error": "failed", "description": "ServiceUnavailable"}
        sys.stdout.write(json.dumps(answer) + "\\n")
        """
    )
    await process.start()
    try:
        with pytest.raises(WriteFailedError, match="ServiceUnavailable"):
            await process.apply(payment_id="pi_1", fields=FIELDS)
    finally:
        await process.close()


async def test_a_garbled_answer_is_skipped_and_the_right_one_still_reaches_its_payment():
    process = scripted_child(
        """
        sys.stdout.write("this is not an answer\\n")
        sys.stdout.write(json.dumps({"n": number + 1000, "written": []}) + "\\n")  # nobody asked
        sys.stdout.write(json.dumps({"n": number, "written": [
            {"id": "t1", "eventId": "ev1", "changedFields": ["depositStatus"], "enrichedAt": "x"}]}) + "\\n")
        """
    )
    await process.start()
    try:
        written = await process.apply(payment_id="pi_1", fields=FIELDS)
        assert written == [WrittenTransaction("t1", "ev1", ("depositStatus",), "x")]
    finally:
        await process.close()


async def test_answers_reach_their_own_payments_in_whatever_order_they_come():
    process = scripted_child(
        """
        held = getattr(sys, "held", [])
        held.append(number)
        sys.held = held
        if len(held) == 3:
            for each in reversed(held):
                sys.stdout.write(json.dumps({"n": each, "written": [
                    {"id": f"t{each}", "eventId": "ev", "changedFields": [], "enrichedAt": None}]}) + "\\n")
        """
    )
    await process.start()
    try:
        answers = await asyncio.gather(
            *(process.apply(payment_id=f"pi_{n}", fields=FIELDS) for n in range(3))
        )
        assert [each[0].transaction_id for each in answers] == ["t1", "t2", "t3"]
    finally:
        await process.close()


async def test_a_child_that_cannot_start_is_a_clear_error():
    process = WriteProcess(command=(sys.executable, "-c", "import sys; sys.exit(3)"))
    with pytest.raises(WriteProcessUnavailableError, match="exit code 3"):
        await process.start()
    with pytest.raises(WriteProcessUnavailableError):
        await process.check()


async def test_a_child_that_never_says_ready_is_stopped_after_the_start_timeout():
    process = WriteProcess(
        command=(sys.executable, "-c", "import time; time.sleep(60)"), start_timeout_seconds=0.5
    )
    with pytest.raises(WriteProcessUnavailableError, match="did not start"):
        await process.start()


async def test_a_child_that_dies_fails_its_waiting_payments_as_retryable_and_is_started_again():
    process = scripted_child("pass  # never answers")
    await process.start()
    try:
        first_pid = process.pid
        waiting = asyncio.ensure_future(process.apply(payment_id="pi_1", fields=FIELDS))
        await asyncio.sleep(0.2)
        os.kill(first_pid, signal.SIGKILL)
        with pytest.raises(WriteProcessUnavailableError) as raised:
            await waiting
        assert isinstance(raised.value, RetryableError)  # the message is retried after a backoff
        for _ in range(100):
            if process.pid not in (None, first_pid):
                break
            await asyncio.sleep(0.05)
        assert process.starts == 2
        await process.check()  # ready again
    finally:
        await process.close()


COUNTED_STARTS = """
import json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
starts = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(starts))
if starts in (2, 3):
    sys.exit(4)  # the first two starts after the first one fail
sys.stdout.write('{"ready":true}\\n'); sys.stdout.flush()
for line in sys.stdin:
    number = json.loads(line)["n"]
    sys.stdout.write(json.dumps({"n": number, "written": []}) + "\\n"); sys.stdout.flush()
"""


async def test_a_child_that_dies_and_cannot_start_at_once_is_started_again_with_longer_waits(tmp_path):
    process = WriteProcess(
        command=(sys.executable, "-c", COUNTED_STARTS, str(tmp_path / "starts")),
        restart_delay_seconds=0.05,
        max_restart_delay_seconds=0.1,
    )
    await process.start()
    try:
        os.kill(process.pid, signal.SIGKILL)
        for _ in range(200):
            if process.starts == 4 and process.pid is not None:
                break
            await asyncio.sleep(0.05)
        assert process.starts == 4  # died; two failed starts; the third ran
        await process.check()
        assert await process.apply(payment_id="pi_1", fields=FIELDS) == []
    finally:
        await process.close()


async def test_a_stop_while_the_child_is_being_started_again_leaves_no_child_behind(tmp_path):
    slow_from_now_on = tmp_path / "slow"
    sleep_if_marked = "import json, pathlib, sys, time\nif pathlib.Path(sys.argv[1]).exists(): time.sleep(30)"
    slow = READY_THEN.replace("import json, sys", sleep_if_marked)
    process = WriteProcess(
        command=(sys.executable, "-c", slow % "    pass", str(slow_from_now_on)), restart_delay_seconds=0.01
    )
    await process.start()
    slow_from_now_on.touch()  # each later start sleeps before it says ready
    first = process.pid
    os.kill(first, signal.SIGKILL)
    for _ in range(200):
        if process.starts == 2:
            break
        await asyncio.sleep(0.02)
    assert process.starts == 2  # a second child is starting (sleeping before it says ready)
    children_before = _children()
    await asyncio.wait_for(process.close(), timeout=10)
    assert _children() < children_before  # the one being started was stopped, not left running


def _children() -> set[int]:
    """This process's live child processes (Linux)."""
    found: set[int] = set()
    for task in pathlib.Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            found |= {int(pid) for pid in (task / "children").read_text().split()}
    return {pid for pid in found if _alive(pid)}


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_payment_that_stops_waiting_leaves_nothing_behind(tmp_path):
    unhandled = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context))
    process = scripted_child(
        """
        if number == 1:
            continue  # held: answered only when the child ends
        answer = {"n": number, "error": "failed", "description": "late"}
        sys.stdout.write(json.dumps(answer) + "\\n")
        """
    )
    await process.start()
    try:
        waiting = asyncio.ensure_future(process.apply(payment_id="pi_1", fields=FIELDS))
        await asyncio.sleep(0.2)
        waiting.cancel()  # a message cancelled at shutdown
        with pytest.raises(asyncio.CancelledError):
            await waiting
        with pytest.raises(WriteFailedError):
            await process.apply(payment_id="pi_2", fields=FIELDS)
        os.kill(process.pid, signal.SIGKILL)  # the held request's payment would now fail, were it waiting
        await asyncio.sleep(0.3)
    finally:
        await process.close()
    gc.collect()
    assert unhandled == []  # no "exception never retrieved", no leaked future


async def test_an_answer_longer_than_any_is_a_child_stopped_and_its_payments_retried():
    process = scripted_child(
        """
        sys.stdout.write(json.dumps({"n": number, "written": [], "padding": "x" * (5 * 1024 * 1024)}) + "\\n")
        """
    )
    await process.start()
    try:
        with pytest.raises(WriteProcessUnavailableError):
            await asyncio.wait_for(process.apply(payment_id="pi_1", fields=FIELDS), timeout=10)
        for _ in range(100):
            if process.starts == 2 and process.pid is not None:
                break
            await asyncio.sleep(0.05)
        assert process.starts == 2  # started again
    finally:
        await process.close()


# -- the real child on the Cosmos DB stand-in ------------------------------------------------------------


@pytest.fixture
async def database(cosmos_client, cosmos_connection):
    async with fresh_database(cosmos_client, "enricher-wp") as name:

        def container(spec: str) -> CosmosContainer:
            return CosmosContainer.of(cosmos_client, database=name, spec=DEFAULT_TOPOLOGY.container(spec))

        settings = EnricherSettings(
            cosmos_endpoint=cosmos_connection.endpoint,
            cosmos_key=cosmos_connection.key,
            cosmos_database=name,
            servicebus_namespace="unused.servicebus.windows.net",  # the write process opens none
        )
        yield container, child_environment(settings, inherited=os.environ)


@contextlib.asynccontextmanager
async def child(env, **options):
    process = WriteProcess(env=env, **options)
    await process.start()
    try:
        yield process
    finally:
        await process.close()


integration = pytest.mark.integration


@integration
async def test_the_child_enriches_every_transaction_of_a_payment_as_the_enricher_would(database):
    container, env = database
    transactions, facts = container("transactions"), container("stripe-facts")
    setup = Setup(transactions=transactions, index=container("stripe-index"), facts=facts)
    charge_id, _, _ = setup.world.charge_on(ORG)
    await setup.store(
        order("t1", event="ev1", payment_id=charge_id),
        order("t2", event="ev2", payment_id=charge_id),
        order("t3", event="ev2", payment_id="ch_someoneelse"),
    )
    async with child(env) as process:
        handler = EnrichmentHandler(
            enricher=PaymentEnricher(
                gateway=setup.world.stripe, index=setup.index, indexer=setup.indexer, clock=setup.clock
            ),
            writer=process,
            announcer=None,
            clock=setup.clock,
        )
        await handler.enrich(charge_id, requested_at=NOW)
        for transaction_id, event in (("t1", "ev1"), ("t2", "ev2")):
            stored = await setup.stored(transaction_id, event)
            assert (stored["enrichmentState"], stored["stripeChargeId"]) == ("enriched", charge_id)
            assert stored["disputeStatus"] == "won"  # another writer's field, carried over
        assert "stripeChargeId" not in await setup.stored("t3", "ev2")

        stored = await setup.stored("t1", "ev1")
        again = await process.apply(
            payment_id=charge_id, fields={name: stored.get(name) for name in ENRICHER_FIELDS}
        )
        assert sorted(each.transaction_id for each in again) == ["t1", "t2"]
        assert all(not each.changed for each in again)  # a redelivery writes nothing twice
    # The webhook service finds the payment's orders by the index the child wrote.
    key = payment_transactions_key(charge_id)
    listed = listed_transactions(await facts.read(key, partition_key=payment_transactions_partition(key)))
    assert sorted(ref.transaction_id for ref in listed) == ["t1", "t2"]


@integration
async def test_a_field_the_enricher_does_not_own_fails_in_the_child_and_is_said_here(database):
    _, env = database
    async with child(env) as process:
        with pytest.raises(WriteFailedError, match="does not own"):
            await process.apply(payment_id="ch_1", fields={"TotalAmount": 1})
        assert await process.apply(payment_id="ch_none", fields=FIELDS) == []  # and it goes on


@integration
async def test_stopping_lets_the_writes_begun_finish(database):
    container, env = database
    transactions = container("transactions")
    for n in range(20):
        await transactions.upsert(order(f"t{n}", event=f"ev{n % 3}", payment_id=f"ch_{n}"))
    process = WriteProcess(env=env)
    await process.start()
    writes = [
        asyncio.ensure_future(
            process.apply(payment_id=f"ch_{n}", fields={**FIELDS, "stripeChargeId": f"ch_{n}"})
        )
        for n in range(20)
    ]
    await asyncio.sleep(0)  # every request on its way
    await process.close()
    written = await asyncio.gather(*writes)
    assert [len(each) for each in written] == [1] * 20
    for n in range(20):
        stored = await transactions.read(f"t{n}", partition_key=f"ev{n % 3}")
        assert stored[CHARGE] == f"ch_{n}"


@integration
async def test_a_stop_signal_to_the_process_group_does_not_cut_the_childs_writes_short(database):
    _, env = database
    async with child(env) as process:
        os.kill(process.pid, signal.SIGTERM)  # as a supervisor's killpg would, or a Ctrl-C
        os.kill(process.pid, signal.SIGINT)
        await asyncio.sleep(0.5)
        await process.check()  # still running: it stops when the enricher closes its stdin
        assert process.starts == 1
        assert await process.apply(payment_id="ch_none", fields=FIELDS) == []


NOISY_WRITER = """
import sys
import enricher.write_process as write_process
plain = write_process.writer_on
def noisy(*args, **options):
    writer = plain(*args, **options)
    apply = writer.apply
    async def printing(**request):
        print("stray text on stdout, no newline", end="", flush=True)  # would garble the next answer
        return await apply(**request)
    writer.apply = printing
    return writer
write_process.writer_on = noisy
sys.exit(write_process.main())
"""


@integration
async def test_nothing_the_child_prints_reaches_the_answers(database):
    """Its stdout is its log (stderr); the answers have a descriptor of their own."""
    _, env = database
    command = (sys.executable, "-c", NOISY_WRITER)
    async with child(env, command=command) as process:
        assert await asyncio.wait_for(process.apply(payment_id="ch_none", fields=FIELDS), timeout=20) == []
