"""Point reads and ETag-guarded replaces asked at the same moment, sent together per partition.

Every request through the Cosmos SDK costs the client about a millisecond of Python (headers,
signing, the pipeline), whatever its size: a service that replaces thousands of documents a minute,
each under its own ETag, spends most of its CPU there. ``CoalescingContainer`` sends the replaces
asked while a round is in flight together in the next round, one transactional batch per
partition (at most ``MAX_BATCH_OPERATIONS`` each), like Nagle's algorithm: a lone replace goes out
at once, and under load the rounds grow by themselves.

With ``batch_upserts`` (default off: each upsert goes straight to the wrapped container), upserts
go the same way as replaces, in the same rounds and batches: a writer of many small documents
(index entries of several listings at once) sends them in batches of up to ``MAX_BATCH_OPERATIONS``
per partition whoever asked for them (``upsert_many``'s callers get nothing back).
``batch_creates`` does the same for creates: a create whose
id exists fails its batch, whose writes are then sent one by one, so only that create raises
``DocumentExistsError``.

``linger_seconds`` (default 0: none) makes each round wait that long before it goes, collecting the
replaces (or reads) asked meanwhile: larger batches, fewer requests, for a caller whose latency
does not matter (a backlog being worked through); a lone replace then waits that long too.

Point reads go the same way: those asked while a round of reads is in flight are read in the
next round with one ``read_many`` per partition (a single-partition query), a lone read as a point
read; a document the query does not return is DocumentNotFoundError for its own caller.

A batch asks the store for no documents back (Cosmos DB's ``Prefer: return=minimal``: the stand-in
and the service then encode, send and decode a fraction of the bytes). A caller gets the document
it wrote, with the ``_etag`` the store gave it (the batch's result names it), but without the other
system properties (``_ts``, ``_rid``, ``_self``); a caller that needs those reads the document.

Each replace keeps its own outcome. A batch is atomic: when one of its replaces fails (a stale
ETag, a missing document), nothing of it is applied, and every replace of that batch is sent
again on its own, so the failing one raises its EtagMismatchError or DocumentNotFoundError to its
own caller (``read_modify_write`` then reads again and re-decides) and the others are written.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from otcommon.store.errors import BatchWriteError, DocumentNotFoundError
from otcommon.store.interface import MAX_BATCH_OPERATIONS, BatchWrite, partition_key_value

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from otcommon.store.interface import Document, DocumentContainer, PatchOperation, QueryPage


@dataclass(slots=True)
class _Read:
    document_id: str
    partition_key: Any
    answers: list[asyncio.Future[Document]]


@dataclass(frozen=True, slots=True)
class _Write:
    kind: Literal["replace", "upsert", "create"]
    document: Mapping[str, Any]
    etag: str | None
    answer: asyncio.Future[Document]
    returned: bool = True  # whether the caller reads the written document (else: its ETag alone)


class CoalescingContainer:
    """A :class:`~otcommon.store.interface.DocumentContainer` whose point reads and replaces go together.

    Every other operation (and, unless ``batch_upserts``, upserts) goes straight to the wrapped
    container.
    """

    def __init__(
        self,
        container: DocumentContainer,
        *,
        max_batch: int = MAX_BATCH_OPERATIONS,
        linger_seconds: float = 0.0,
        batch_upserts: bool = False,
        batch_creates: bool = False,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH_OPERATIONS:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH_OPERATIONS}")
        if linger_seconds < 0:
            raise ValueError("linger_seconds must not be negative")
        self._container = container
        self._max_batch = max_batch
        self._linger = linger_seconds
        self._batch_upserts = batch_upserts
        self._batch_creates = batch_creates
        self._waiting: list[_Write] = []
        self._sending: asyncio.Task[None] | None = None
        self._reads_waiting: dict[tuple[str, str], _Read] = {}
        self._reading: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """The wrapped container's name."""
        return self._container.name

    @property
    def partition_key_path(self) -> str:
        """The wrapped container's partition key path."""
        return self._container.partition_key_path

    async def replace(self, document: Mapping[str, Any], *, etag: str | None = None) -> Document:
        """Replace as the wrapped container does, in a batch with the replaces asked meanwhile."""
        return await self._asked("replace", document, etag=etag)

    def _asked(
        self,
        kind: Literal["replace", "upsert", "create"],
        document: Mapping[str, Any],
        *,
        etag: str | None = None,
        returned: bool = True,
    ) -> asyncio.Future[Document]:
        answer: asyncio.Future[Document] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Write(kind, document, etag, answer, returned))
        if self._sending is None:
            # A task, so that the replaces of the callers woken together with this one join it.
            self._sending = asyncio.ensure_future(self._send_rounds())
        return answer

    async def _send_rounds(self) -> None:
        try:
            while self._waiting:
                await self._lingering()
                round_, self._waiting = self._waiting, []
                by_partition: dict[str, list[_Write]] = {}
                keys: dict[str, Any] = {}
                for each in round_:
                    key = partition_key_value(each.document, self._container.partition_key_path)
                    by_partition.setdefault(repr(key), []).append(each)
                    keys[repr(key)] = key
                await asyncio.gather(
                    *(
                        self._send(replaces[start : start + self._max_batch], partition_key=keys[name])
                        for name, replaces in by_partition.items()
                        for start in range(0, len(replaces), self._max_batch)
                    )
                )
        finally:
            self._sending = None

    async def _lingering(self) -> None:
        if self._linger > 0:
            await asyncio.sleep(self._linger)

    async def _send(self, replaces: list[_Write], *, partition_key: Any) -> None:
        if len(replaces) > 1:
            writes = [BatchWrite(each.kind, each.document, etag=each.etag) for each in replaces]
            try:
                # The documents are not sent back: each caller gets the one it sent, with its new ETag.
                written = await self._container.write_batch(
                    writes, partition_key=partition_key, return_documents=False
                )
            except BatchWriteError:
                pass  # nothing of it was applied: each replace on its own, below, with its own outcome
            except Exception as error:  # noqa: BLE001 - handed to every caller, who raises it
                for each in replaces:
                    _settle(each.answer, error=error)
                return
            else:
                unnamed = [
                    each
                    for each, result in zip(replaces, written, strict=True)
                    if not _answer_written(each, result)
                ]
                await asyncio.gather(*(self._answer_read(each) for each in unnamed))
                return
        await asyncio.gather(*(self._send_alone(each) for each in replaces))

    async def _answer_read(self, write: _Write) -> None:
        """Settle a batched write whose ETag the store did not name: the caller's next guarded write
        needs it, so the document is read."""
        try:
            document = await self._container.read(
                str(write.document["id"]),
                partition_key=partition_key_value(write.document, self._container.partition_key_path),
            )
        except Exception as error:  # noqa: BLE001 - handed to the caller, who raises it
            _settle(write.answer, error=error)
        else:
            _settle(write.answer, document=document)

    async def _send_alone(self, replace: _Write) -> None:
        try:
            if replace.kind == "upsert":
                document = await self._container.upsert(replace.document)
            elif replace.kind == "create":
                document = await self._container.create(replace.document)
            else:
                document = await self._container.replace(replace.document, etag=replace.etag)
        except Exception as error:  # noqa: BLE001 - handed to the caller, who raises it
            _settle(replace.answer, error=error)
        else:
            _settle(replace.answer, document=document)

    async def read(self, document_id: str, *, partition_key: Any) -> Document:
        """Point read as the wrapped container does, with the reads asked meanwhile."""
        answer: asyncio.Future[Document] = asyncio.get_running_loop().create_future()
        key = (repr(partition_key), document_id)
        if (waiting := self._reads_waiting.get(key)) is None:
            self._reads_waiting[key] = waiting = _Read(document_id, partition_key, [])
        waiting.answers.append(answer)
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read_rounds())
        return await answer

    async def _read_rounds(self) -> None:
        try:
            while self._reads_waiting:
                await self._lingering()
                round_, self._reads_waiting = self._reads_waiting, {}
                by_partition: dict[str, list[_Read]] = {}
                for (partition, _), each in round_.items():
                    by_partition.setdefault(partition, []).append(each)
                await asyncio.gather(*(self._read_together(reads) for reads in by_partition.values()))
        finally:
            self._reading = None

    async def _read_together(self, reads: list[_Read]) -> None:
        partition_key = reads[0].partition_key
        try:
            if len(reads) == 1:
                found = {
                    reads[0].document_id: await self._container.read(
                        reads[0].document_id, partition_key=partition_key
                    )
                }
            else:
                found = await self._container.read_many(
                    [each.document_id for each in reads], partition_key=partition_key
                )
        except DocumentNotFoundError:
            found = {}
        except Exception as error:  # noqa: BLE001 - handed to every caller, who raises it
            for each in reads:
                for answer in each.answers:
                    _settle(answer, error=error)
            return
        for each in reads:
            document = found.get(each.document_id)
            for answer in each.answers:
                if document is None:
                    _settle(answer, error=DocumentNotFoundError(self.name, each.document_id))
                else:
                    _settle(answer, document=document)

    async def create(self, document: Mapping[str, Any]) -> Document:
        """Create as the wrapped container does; with ``batch_creates``, batched like a replace."""
        if self._batch_creates:
            return await self._asked("create", document)
        return await self._container.create(document)

    async def upsert(self, document: Mapping[str, Any]) -> Document:
        """Upsert as the wrapped container does; with ``batch_upserts``, batched like a replace."""
        if self._batch_upserts:
            return await self._asked("upsert", document)
        return await self._container.upsert(document)

    async def upsert_many(self, documents: Sequence[Mapping[str, Any]]) -> None:
        """Upsert each document as :meth:`upsert` does, without a task per document or an answer each.

        Every upsert ends (written, or failed with its own outcome) before this returns or raises
        the first failure.
        """
        if not self._batch_upserts:
            for document in documents:
                await self._container.upsert(document)
            return
        outcomes = await asyncio.gather(
            *(self._asked("upsert", document, returned=False) for document in documents),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def patch(
        self,
        document_id: str,
        *,
        partition_key: Any,
        operations: list[PatchOperation],
        etag: str | None = None,
    ) -> Document:
        """Patch (wrapped container)."""
        return await self._container.patch(
            document_id, partition_key=partition_key, operations=operations, etag=etag
        )

    async def delete(self, document_id: str, *, partition_key: Any, etag: str | None = None) -> None:
        """Delete (wrapped container)."""
        await self._container.delete(document_id, partition_key=partition_key, etag=etag)

    async def read_many(self, ids: Sequence[str], *, partition_key: Any) -> dict[str, Document]:
        """Documents of one partition by id (wrapped container)."""
        return await self._container.read_many(ids, partition_key=partition_key)

    async def write_batch(
        self, writes: Sequence[BatchWrite], *, partition_key: Any, return_documents: bool = True
    ) -> list[Document]:
        """A transactional batch (wrapped container)."""
        return await self._container.write_batch(
            writes, partition_key=partition_key, return_documents=return_documents
        )

    def find(
        self, where: Mapping[str, Any], *, partition_key: Any = None, page_size: int = 500
    ) -> AsyncIterator[Document]:
        """Equality filters (wrapped container)."""
        return self._container.find(where, partition_key=partition_key, page_size=page_size)

    def query(
        self,
        query: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        partition_key: Any = None,
        page_size: int = 100,
        continuation: str | None = None,
    ) -> AsyncIterator[QueryPage]:
        """A parameterised query (wrapped container)."""
        return self._container.query(
            query,
            parameters=parameters,
            partition_key=partition_key,
            page_size=page_size,
            continuation=continuation,
        )


def _answer_written(write: _Write, result: Document) -> bool:
    """Settle a batched write: the document as written, with the ETag the store gave it; False when
    the caller needs that ETag and the store did not name it."""
    if not write.returned:
        _settle(write.answer, document=result)
    elif etag := result.get("_etag"):
        # The system properties (``_``-prefixed) the caller sent are the old copy's: only the ETag is new.
        sent = {name: value for name, value in write.document.items() if not name.startswith("_")}
        _settle(write.answer, document={**sent, "_etag": etag})
    else:
        return False
    return True


def _settle(
    answer: asyncio.Future[Document], *, document: Document | None = None, error: Exception | None = None
) -> None:
    if answer.done():
        return  # its caller was cancelled
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(dict(document or {}))
