"""A small evaluator for the KQL subset the Kibana saved searches use, to run them on real log
lines: ``and``/``or``/``not``, parentheses, ``field : value``, ``field : *``,
``field : (a or b)``, ``field > n``. ``message`` is full text (phrase containment, case-insensitive);
other fields are keywords (exact match)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Doc = dict[str, Any]
Predicate = Callable[[Doc], bool]
TEXT_FIELDS = {"message", "error.message"}
_TOKEN = re.compile(r'\(|\)|"(?:[^"\\]|\\.)*"|[<>]=?|:|[^\s():<>"]+')


def tokens(query: str) -> list[str]:
    return _TOKEN.findall(query)


def fields(query: str) -> set[str]:
    """Field names the query refers to."""
    toks = tokens(query)
    return {toks[i - 1] for i, t in enumerate(toks) if t in (":", ">", "<", ">=", "<=")}


class _Parser:
    def __init__(self, query: str) -> None:
        self.toks = tokens(query)
        self.pos = 0

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected and tok.lower() != expected):
            raise ValueError(f"expected {expected or 'a token'} at {self.pos}: {self.toks}")
        self.pos += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise ValueError(f"trailing tokens: {self.toks[self.pos :]}")
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while (self.peek() or "").lower() == "or":
            self.take()
            parts.append(self.and_expr())
        return lambda d: any(p(d) for p in parts)

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while (self.peek() or "").lower() == "and":
            self.take()
            parts.append(self.unary())
        return lambda d: all(p(d) for p in parts)

    def unary(self) -> Predicate:
        if (self.peek() or "").lower() == "not":
            self.take()
            inner = self.unary()
            return lambda d: not inner(d)
        if self.peek() == "(":
            self.take()
            inner = self.or_expr()
            self.take(")")
            return inner
        field = self.take()
        op = self.take()
        if op in (">", "<", ">=", "<="):
            bound = float(self.take())
            return lambda d: _compare(d.get(field), op, bound)
        if op != ":":
            raise ValueError(f"unsupported operator {op!r}")
        if self.peek() == "(":
            self.take()
            values = [self.take()]
            while (self.peek() or "").lower() == "or":
                self.take()
                values.append(self.take())
            self.take(")")
            return lambda d: any(_match(d, field, v) for v in values)
        value = self.take()
        return lambda d: _match(d, field, value)


def _compare(actual: Any, op: str, bound: float) -> bool:
    if not isinstance(actual, int | float):
        return False
    return {">": actual > bound, "<": actual < bound, ">=": actual >= bound,
            "<=": actual <= bound}[op]  # fmt: skip


def _match(doc: Doc, field: str, value: str) -> bool:
    if field not in doc:
        return False
    if value == "*":
        return True
    wanted = value[1:-1] if value.startswith('"') else value
    actual = str(doc[field])
    if field in TEXT_FIELDS:
        return wanted.lower() in actual.lower()
    return actual == wanted


def compile_kql(query: str) -> Predicate:
    """A predicate over flattened documents ({"labels.run_id": ...})."""
    return _Parser(query).parse()
