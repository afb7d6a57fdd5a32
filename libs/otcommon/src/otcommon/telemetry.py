"""Logging (structlog), tracing and metrics (OpenTelemetry); the request middleware is in ``otcommon.http``.

Logs never carry secrets or personal data: a masking processor replaces values of sensitive
keys and any e-mail address or secret-looking token in free text.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

import structlog
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

    from otcommon.settings import LogFormat, LogLevel

MASK = "***"
SENSITIVE_KEYS = frozenset(
    {
        "name",
        "email",
        "phone",
        "customer_name",
        "customer_email",
        "customer_phone",
        "password",
        "secret",
        "token",
        "access_token",
        "authorization",
        "api_key",
        "key",
        "connection_string",
        "client_secret",
        "signature",
        "stripe_signature",
    }
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
# International (+...) and North American ((555) 010-2030) phone numbers in free text.
_PHONE = re.compile(r"\+\d[\d\s().-]{6,}\d|\(\d{3}\)\s?\d{3}[-.\s]\d{4}")
_SECRET_TOKENS = re.compile(
    r"\b(sk|rk)_(live|test)_[0-9A-Za-z]+|\bwhsec_[0-9A-Za-z]+|(SharedAccessKey|AccountKey)=[^;\s]+"
)


def mask_text(text: str) -> str:
    """Replace e-mail addresses, phone numbers and secret-looking tokens inside free text."""
    return _PHONE.sub(MASK, _SECRET_TOKENS.sub(MASK, _EMAIL.sub(MASK, text)))


def _mask_value(key: str, value: Any) -> Any:
    if key.casefold() in SENSITIVE_KEYS:
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, item) for item in value]
    return value


def mask_personal_data(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: no secrets or personal data leave the process in a log line."""
    return {key: _mask_value(key, value) for key, value in event_dict.items()}


def add_trace_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the current span's trace and span ids, for joining logs to traces."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict["trace_id"] = format(span_context.trace_id, "032x")
        event_dict["span_id"] = format(span_context.span_id, "016x")
    return event_dict


def configure_logging(
    *, level: LogLevel = "INFO", fmt: LogFormat = "auto", service_name: str = "opentickets"
) -> None:
    """Configure structlog and the standard library's logging (SDK logs) alike."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
        # Tracebacks are text before masking, so what an exception message carries is masked too.
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        mask_personal_data,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    # JSON lines carry their text as "message", whichever library logged them.
    rename: Processor = structlog.processors.EventRenamer("message") if use_json else _identity
    structlog.configure(
        processors=[*shared, rename, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=_LineWriterFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service_name)
    handler = _LineHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared, processors=[_drop_meta, rename, renderer]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Azure SDKs log every HTTP request at INFO; their warnings are what an operator needs.
    for noisy in ("azure", "uamqp", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# One lock for every line written to the log stream, whichever thread and logging library writes it.
# structlog's own loggers and the standard library's handlers lock apart, and ``print`` writes a line
# in two pieces: a line of one thread could end inside another's.
_LINE_LOCK = threading.RLock()


class _LineWriter:
    """structlog's logger: each line written whole, under the lock the standard library's handler takes."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        with _LINE_LOCK:
            self._stream.write(message + "\n")
            self._stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _LineWriterFactory:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, *_: object) -> _LineWriter:
        return _LineWriter(self._stream)


class _LineHandler(logging.StreamHandler[TextIO]):
    """The standard library's handler, emitting under the same lock as structlog's lines."""

    def createLock(self) -> None:  # noqa: N802 - the standard library's name
        self.lock = _LINE_LOCK


def _identity(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return event_dict


def _drop_meta(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    return structlog.stdlib.ProcessorFormatter.remove_processors_meta(logger, name, event_dict)


def configure_tracing(*, service_name: str, otlp_endpoint: str | None) -> TracerProvider:
    """An OpenTelemetry tracer provider; spans are exported over OTLP/HTTP only when an endpoint is set."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415 - optional path
            OTLPSpanExporter,
        )

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces"))
        )
    trace.set_tracer_provider(provider)
    return provider


METRICS_EXPORT_INTERVAL_SECONDS = 30.0
"""How often the counters are sent to the collector."""


def metrics_provider(
    *, service_name: str, otlp_endpoint: str, export_interval_seconds: float = METRICS_EXPORT_INTERVAL_SECONDS
) -> MeterProvider:
    """A meter provider that sends every counter to ``otlp_endpoint`` over OTLP/HTTP (``/v1/metrics``)."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415 - optional path
        OTLPMetricExporter,
    )

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/metrics"),
        export_interval_millis=export_interval_seconds * 1000,
    )
    return MeterProvider(resource=Resource.create({"service.name": service_name}), metric_readers=[reader])


def configure_metrics(*, service_name: str, otlp_endpoint: str | None) -> MeterProvider | None:
    """Export the process's counters over OTLP/HTTP when an endpoint is set; without one they count nothing.

    The services create their counters at import (``metrics.get_meter(...).create_counter``): the
    API's proxies forward them to the provider set here. The provider flushes at exit.
    """
    if not otlp_endpoint:
        return None
    provider = metrics_provider(service_name=service_name, otlp_endpoint=otlp_endpoint)
    metrics.set_meter_provider(provider)
    return provider
