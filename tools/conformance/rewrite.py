"""The only edits made to a sample before it runs: how its client connects.

- Service Bus: a client built with a Microsoft Entra ID credential (`DefaultAzureCredential`) is built from
  the emulator's connection string instead; a client built with a shared-access credential keeps it and is
  told not to use TLS (the emulator speaks plain AMQP, as Microsoft's does).
- Cosmos DB: every client is built with endpoint discovery off (the stand-in is one endpoint, no regions),
  and a client given a Microsoft Entra ID credential is given the account key instead.

Calls are found with `ast` and edited in the source text, so everything else stays byte for byte as
published. The result must still parse.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

# Credentials that sign in with Microsoft Entra ID, which the stand-ins do not offer.
ENTRA_CREDENTIALS = frozenset({"DefaultAzureCredential"})
_CONNECTION_STRING = '__import__("os").environ["SERVICEBUS_CONNECTION_STR"]'
_ACCOUNT_KEY = '__import__("os").environ["ACCOUNT_KEY"]'


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


class RewriteError(ValueError):
    """A sample could not be rewritten into valid Python."""


def rewrite_servicebus(source: str) -> tuple[str, int]:
    """The sample with its `ServiceBusClient(...)` constructions rewritten, and how many were."""
    tree = ast.parse(source)
    entra_names = _names_bound_to_entra_credentials(tree)
    edits = []
    for call in _calls_named(tree, "ServiceBusClient"):
        credential = _argument(call, 1, "credential")
        if credential is None:
            continue
        if _is_entra(credential, entra_names):
            edits.append(_from_connection_string(source, call))
        elif not _has_keyword(call, "use_tls"):
            edits.append(_add_keyword(source, call, "use_tls=False"))
    return _apply(source, edits), len(edits)


def rewrite_cosmos(source: str) -> tuple[str, int]:
    """The sample with its `CosmosClient(...)` constructions rewritten, and how many edits were made."""
    tree = ast.parse(source)
    entra_names = _names_bound_to_entra_credentials(tree)
    edits = []
    for call in _calls_named(tree, "CosmosClient"):
        credential = _argument(call, 1, "credential")
        if credential is not None and _is_entra(credential, entra_names):
            start, end = _span(source, credential)
            edits.append(_Edit(start, end, _ACCOUNT_KEY))
        if not _has_keyword(call, "enable_endpoint_discovery"):
            edits.append(_add_keyword(source, call, "enable_endpoint_discovery=False"))
    return _apply(source, edits), len(edits)


def _called_name(call: ast.Call) -> str:
    """`f` for `f(...)` and `module.f(...)`."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _calls_named(tree: ast.AST, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and _called_name(node) == name]


def _names_bound_to_entra_credentials(tree: ast.AST) -> set[str]:
    """Names given an Entra credential: `name = DefaultAzureCredential()` or `with ... as name`."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_entra(node.value, set()):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        elif (
            isinstance(node, ast.withitem)
            and _is_entra(node.context_expr, set())
            and isinstance(node.optional_vars, ast.Name)
        ):
            names.add(node.optional_vars.id)
    return names


def _is_entra(node: ast.expr, entra_names: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in entra_names
    return isinstance(node, ast.Call) and _called_name(node) in ENTRA_CREDENTIALS


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((item.value for item in call.keywords if item.arg == keyword), None)


def _has_keyword(call: ast.Call, keyword: str) -> bool:
    return any(item.arg == keyword for item in call.keywords)


def _from_connection_string(source: str, call: ast.Call) -> _Edit:
    """`ServiceBusClient(namespace, credential, **options)` -> `.from_connection_string(..., **options)`."""
    kept = [
        ast.get_source_segment(source, item) or ""
        for item in call.keywords
        if item.arg not in {"fully_qualified_namespace", "credential"}
    ]
    func = ast.get_source_segment(source, call.func) or "ServiceBusClient"
    text = f"{func}.from_connection_string({', '.join([_CONNECTION_STRING, *kept])})"
    start, end = _span(source, call)
    return _Edit(start, end, text)


def _add_keyword(source: str, call: ast.Call, keyword: str) -> _Edit:
    _, end = _span(source, call)
    closing = end - 1  # the call's closing parenthesis
    before = source[:closing].rstrip()
    needs_comma = bool(call.args or call.keywords) and not before.endswith(",")
    insert_at = len(before)
    return _Edit(insert_at, insert_at, (", " if needs_comma else "") + keyword)


def _span(source: str, node: ast.expr) -> tuple[int, int]:
    """Character offsets of a node (ast gives UTF-8 byte columns)."""
    lines = source.splitlines(keepends=True)

    def offset(line: int, column: int) -> int:
        prefix = "".join(lines[: line - 1])
        return len(prefix) + len(lines[line - 1].encode()[:column].decode())

    if node.end_lineno is None or node.end_col_offset is None:
        raise RewriteError("the parser gave no end position for a call")
    return offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)


def _apply(source: str, edits: list[_Edit]) -> str:
    for edit in sorted(edits, key=lambda item: item.start, reverse=True):
        source = source[: edit.start] + edit.text + source[edit.end :]
    try:
        ast.parse(source)
    except SyntaxError as error:
        raise RewriteError(f"the rewritten sample does not parse: {error}") from error
    return source
