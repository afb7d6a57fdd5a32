"""Subscription rules: correlation filters, SQL filters and SQL actions, as Azure Service Bus evaluates them.

The SQL dialect is the subset documented for Service Bus: comparisons, AND/OR/NOT, IN, LIKE (with ESCAPE),
IS [NOT] NULL, EXISTS, arithmetic, on `sys.*` system properties and user properties. Comparisons follow
three-valued logic: a missing property or a type mismatch makes the comparison unknown, and a rule only
matches when its filter is true.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# System property names as SQL sees them (lower-cased; the parser is case-insensitive for them).
SYSTEM_PROPERTIES = frozenset(
    {
        "messageid",
        "correlationid",
        "to",
        "replyto",
        "label",
        "subject",
        "sessionid",
        "replytosessionid",
        "contenttype",
        "sequencenumber",
        "enqueuedtimeutc",
        "timetolive",
        "deliverycount",
    }
)
# Correlation filter field -> system property it compares.
_CORRELATION_FIELDS = {
    "correlation_id": "correlationid",
    "message_id": "messageid",
    "to": "to",
    "reply_to": "replyto",
    "label": "label",
    "session_id": "sessionid",
    "reply_to_session_id": "replytosessionid",
    "content_type": "contenttype",
}


class FilterSyntaxError(ValueError):
    """A SQL filter or action that does not parse."""

    def __init__(self, message: str, *, in_action: bool = False) -> None:
        super().__init__(message)
        self.in_action = in_action


@dataclass
class MessageView:
    """What a filter sees of a message: system properties (lower-case keys) and user properties."""

    system: dict[str, Any]
    user: dict[str, Any]


# An expression evaluates to a value; None stands for SQL's NULL / unknown.
Expression = Callable[[MessageView], Any]


@dataclass(frozen=True)
class Assignment:
    """One `SET target = value` or `REMOVE target` step of an action."""

    scope: str  # "sys" or "user"
    name: str
    value: Expression | None  # None means REMOVE


@dataclass(frozen=True)
class RuleFilter:
    """A parsed rule: `matches` decides, `action` rewrites the subscription's copy."""

    name: str
    matches: Callable[[MessageView], bool]
    action: tuple[Assignment, ...] = field(default=())


def parse_rule(spec: Mapping[str, Any]) -> RuleFilter:
    """Build a rule from `{"name", "sql" | "correlation", "action"}`."""
    if "sql" in spec:
        predicate = compile_sql_filter(spec["sql"])
    else:
        predicate = correlation_filter(spec.get("correlation", {}))
    action_text = spec.get("action")
    action = compile_sql_action(action_text) if action_text else ()
    return RuleFilter(name=str(spec["name"]), matches=predicate, action=action)


def correlation_filter(fields: Mapping[str, Any]) -> Callable[[MessageView], bool]:
    """Every given system field and user property must equal the message's."""
    system_expected = {
        _CORRELATION_FIELDS[key]: value for key, value in fields.items() if key != "properties"
    }
    user_expected = dict(fields.get("properties", {}))

    def matches(view: MessageView) -> bool:
        for name, expected in system_expected.items():
            if _system_value(view, name) != expected:
                return False
        for name, expected in user_expected.items():
            actual = view.user.get(name)
            if actual is None or not _same_kind(actual, expected) or actual != expected:
                return False
        return True

    return matches


def apply_action(action: tuple[Assignment, ...], view: MessageView) -> MessageView:
    """Run an action's steps in order on a copy of the view."""
    result = MessageView(system=dict(view.system), user=dict(view.user))
    for step in action:
        target = result.system if step.scope == "sys" else result.user
        if step.value is None:
            target.pop(step.name, None)
        else:
            target[step.name] = step.value(result)
    return result


def _system_value(view: MessageView, name: str) -> Any:
    if name in {"label", "subject"}:
        return view.system.get("label")
    return view.system.get(name)


def _same_kind(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool)
    if isinstance(left, int | float) and isinstance(right, int | float):
        return True
    return type(left) is type(right)


# ---------------------------------------------------------------------------------------------------------
# Tokenizer

_TOKEN = re.compile(
    r"""
    \s*(?:
      (?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)
    | (?P<string>'(?:[^']|'')*')
    | (?P<bracketed>\[[^\]]*\])
    | (?P<name>[A-Za-z_@$][A-Za-z0-9_$]*(?:\.[A-Za-z_@$][A-Za-z0-9_$]*)?)
    | (?P<op><>|!=|>=|<=|=|<|>|\(|\)|,|\+|-|\*|/|%|;)
    )""",
    re.VERBOSE,
)
_KEYWORDS = frozenset(
    {"and", "or", "not", "in", "like", "escape", "is", "null", "exists", "true", "false", "set", "remove"}
)


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, name, keyword, op, end
    text: str
    position: int


def _tokenize(text: str, *, in_action: bool) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            snippet = text[position:].strip()[:20]
            raise FilterSyntaxError(
                f"unexpected input at position {position}: {snippet!r}", in_action=in_action
            )
        kind = match.lastgroup or "op"
        value = match.group(kind)
        start = match.start(kind)
        if kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "keyword", value.lower()
        elif kind == "bracketed":
            kind, value = "name", value[1:-1]
        tokens.append(_Token(kind, value, start))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------------------------------------------------
# Parser (recursive descent) producing closures


class _Parser:
    def __init__(self, text: str, *, in_action: bool = False) -> None:
        self.in_action = in_action
        self.tokens = _tokenize(text, in_action=in_action)
        self.index = 0

    def error(self, message: str) -> FilterSyntaxError:
        token = self.peek()
        where = "end of input" if token.kind == "end" else f"{token.text!r} at position {token.position}"
        return FilterSyntaxError(f"{message} (found {where})", in_action=self.in_action)

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> bool:
        token = self.peek()
        if token.kind == kind and (text is None or token.text == text):
            self.index += 1
            return True
        return False

    def expect(self, kind: str, text: str | None = None) -> _Token:
        token = self.peek()
        if token.kind != kind or (text is not None and token.text != text):
            raise self.error(f"expected {text or kind}")
        return self.take()

    # Boolean layer -------------------------------------------------------------------------------------

    def condition(self) -> Expression:
        left = self.conjunction()
        while self.accept("keyword", "or"):
            right = self.conjunction()
            left = _or(left, right)
        return left

    def conjunction(self) -> Expression:
        left = self.negation()
        while self.accept("keyword", "and"):
            right = self.negation()
            left = _and(left, right)
        return left

    def negation(self) -> Expression:
        if self.accept("keyword", "not"):
            inner = self.negation()
            return lambda view: None if (value := inner(view)) is None else not value
        return self.predicate()

    def predicate(self) -> Expression:
        if self.accept("keyword", "exists"):
            self.expect("op", "(")
            scope, name = self.property_name(self.expect("name"))
            self.expect("op", ")")
            return lambda view: _lookup(view, scope, name) is not None
        left = self.arithmetic()
        token = self.peek()
        if token.kind == "op" and token.text in {"=", "<>", "!=", ">", ">=", "<", "<="}:
            self.take()
            right = self.arithmetic()
            return _comparison(token.text, left, right)
        return self.membership(left)

    def membership(self, left: Expression) -> Expression:
        """The `[NOT] IN`, `[NOT] LIKE` and `IS [NOT] NULL` forms, or the bare value."""
        negated = self.accept("keyword", "not")
        if self.accept("keyword", "in"):
            return _maybe_not(self.in_list(left), negated=negated)
        if self.accept("keyword", "like"):
            return _maybe_not(self.like(left), negated=negated)
        if negated:
            raise self.error("expected IN or LIKE after NOT")
        if self.accept("keyword", "is"):
            is_not = self.accept("keyword", "not")
            self.expect("keyword", "null")
            if is_not:
                return lambda view: left(view) is not None
            return lambda view: left(view) is None
        return left

    def in_list(self, left: Expression) -> Expression:
        self.expect("op", "(")
        items = [self.arithmetic()]
        while self.accept("op", ","):
            items.append(self.arithmetic())
        self.expect("op", ")")

        def contains(view: MessageView) -> bool | None:
            value = left(view)
            if value is None:
                return None
            return any(_compare_values("=", value, item(view)) for item in items)

        return contains

    def like(self, left: Expression) -> Expression:
        pattern_token = self.expect("string")
        escape = None
        if self.accept("keyword", "escape"):
            escape = _unquote(self.expect("string").text)
            if len(escape) != 1:
                raise self.error("ESCAPE needs exactly one character")
        regex = _like_regex(_unquote(pattern_token.text), escape)

        def like(view: MessageView) -> bool | None:
            value = left(view)
            if not isinstance(value, str):
                return None
            return regex.fullmatch(value) is not None

        return like

    # Value layer ---------------------------------------------------------------------------------------

    def arithmetic(self) -> Expression:
        left = self.term()
        while (token := self.peek()).kind == "op" and token.text in {"+", "-"}:
            self.take()
            left = _arithmetic(token.text, left, self.term())
        return left

    def term(self) -> Expression:
        left = self.unary()
        while (token := self.peek()).kind == "op" and token.text in {"*", "/", "%"}:
            self.take()
            left = _arithmetic(token.text, left, self.unary())
        return left

    def unary(self) -> Expression:
        if self.accept("op", "-"):
            inner = self.unary()
            return lambda view: -value if isinstance(value := inner(view), int | float) else None
        if self.accept("op", "+"):
            return self.unary()
        return self.primary()

    def primary(self) -> Expression:
        token = self.take()
        literal = _literal(token)
        if literal is not _NOT_A_LITERAL:
            return lambda _view: literal
        if token.kind == "name":
            scope, name = self.property_name(token)
            return lambda view: _lookup(view, scope, name)
        if token.kind == "op" and token.text == "(":
            inner = self.condition()
            self.expect("op", ")")
            return inner
        self.index -= 1
        raise self.error("expected a value, a property name or '('")

    def property_name(self, token: _Token) -> tuple[str, str]:
        text = token.text
        prefix, _, rest = text.partition(".")
        if rest and prefix.lower() == "sys":
            name = rest.lower()
            if name not in SYSTEM_PROPERTIES:
                raise FilterSyntaxError(f"unknown system property 'sys.{rest}'", in_action=self.in_action)
            return "sys", "label" if name == "subject" else name
        if rest and prefix.lower() == "user":
            return "user", rest
        return "user", text

    # Actions -------------------------------------------------------------------------------------------

    def action(self) -> tuple[Assignment, ...]:
        steps: list[Assignment] = []
        while self.peek().kind != "end":
            if self.accept("keyword", "set"):
                scope, name = self.property_name(self.expect("name"))
                self.expect("op", "=")
                steps.append(Assignment(scope, name, self.arithmetic()))
            elif self.accept("keyword", "remove"):
                scope, name = self.property_name(self.expect("name"))
                steps.append(Assignment(scope, name, None))
            else:
                raise self.error("expected SET or REMOVE")
            if not (self.accept("op", ";") or self.accept("op", ",")) and self.peek().kind != "end":
                raise self.error("expected ';' between action statements")
        if not steps:
            raise self.error("an action needs at least one SET or REMOVE")
        return tuple(steps)


def compile_sql_filter(text: str) -> Callable[[MessageView], bool]:
    """Compile a SQL filter expression; the result is true only when the expression is true."""
    parser = _Parser(text)
    expression = parser.condition()
    if parser.peek().kind != "end":
        raise parser.error("unexpected text after the expression")
    return lambda view: expression(view) is True


def compile_sql_action(text: str) -> tuple[Assignment, ...]:
    """Compile a SQL rule action (`SET a = expr; REMOVE b`)."""
    return _Parser(text, in_action=True).action()


_NOT_A_LITERAL = object()


def _literal(token: _Token) -> Any:
    """The constant a token stands for, or `_NOT_A_LITERAL`."""
    if token.kind == "number":
        return float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
    if token.kind == "string":
        return _unquote(token.text)
    if token.kind == "keyword" and token.text in {"true", "false", "null"}:
        return {"true": True, "false": False, "null": None}[token.text]
    return _NOT_A_LITERAL


def _lookup(view: MessageView, scope: str, name: str) -> Any:
    if scope == "sys":
        return _system_value(view, name)
    return view.user.get(name)


def _unquote(text: str) -> str:
    return text[1:-1].replace("''", "'")


def _like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if escape is not None and char == escape and index + 1 < len(pattern):
            parts.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        index += 1
    return re.compile("".join(parts), re.DOTALL)


def _or(left: Expression, right: Expression) -> Expression:
    def evaluate(view: MessageView) -> bool | None:
        first, second = left(view), right(view)
        if first is True or second is True:
            return True
        if first is None or second is None:
            return None
        return False

    return evaluate


def _and(left: Expression, right: Expression) -> Expression:
    def evaluate(view: MessageView) -> bool | None:
        first = left(view)
        if first is False:
            return False
        second = right(view)
        if second is False:
            return False
        if first is None or second is None:
            return None
        return bool(first) and bool(second)

    return evaluate


def _maybe_not(inner: Expression, *, negated: bool) -> Expression:
    if not negated:
        return inner
    return lambda view: None if (value := inner(view)) is None else not value


def _comparison(operator: str, left: Expression, right: Expression) -> Expression:
    return lambda view: _compare_values(operator, left(view), right(view))


def _compare_values(operator: str, left: Any, right: Any) -> bool | None:
    if left is None or right is None or not _same_kind(left, right):
        return None
    if operator == "=":
        return bool(left == right)
    if operator in {"<>", "!="}:
        return bool(left != right)
    if isinstance(left, bool):
        return None  # booleans only compare for equality
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
    }
    return comparisons[operator](left, right)


def _divide(first: float, second: float) -> float:
    if isinstance(first, int) and isinstance(second, int):
        return int(first / second)  # SQL integer division truncates toward zero
    return first / second


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "%": operator.mod,
    "/": _divide,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _arithmetic(symbol: str, left: Expression, right: Expression) -> Expression:
    function = _ARITHMETIC[symbol]

    def evaluate(view: MessageView) -> Any:
        first, second = left(view), right(view)
        if symbol == "+" and isinstance(first, str) and isinstance(second, str):
            return first + second
        if not (_is_number(first) and _is_number(second)):
            return None
        if symbol in {"/", "%"} and second == 0:
            return None
        return function(first, second)

    return evaluate
