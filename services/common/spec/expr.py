"""A small, safe expression language for ``filter`` and ``derive`` steps.

Expressions are parsed with Python's ``ast`` module in ``eval`` mode and then checked against an
allow-list of node types and function names; nothing is ever passed to ``eval``, ``exec`` or
pandas ``query``. A checked expression is evaluated by walking the tree over pandas Series, so it
is vectorised.

Grammar (Python-like):

* column names as bare identifiers (``amount``) or ``col("Store No")`` for any name;
* literals: numbers, strings, ``True``/``False``/``None``, lists (for ``in``);
* arithmetic ``+ - * / // %``, unary ``-``; comparisons ``== != < <= > >=``, ``in``, ``not in``;
* boolean ``and``, ``or``, ``not``; conditional ``a if cond else b``;
* functions: see :data:`FUNCTIONS`.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from services.common.errors import SpecError

_ARROW_STRING = pd.ArrowDtype(pa.string())
_ARROW_FLOAT = pd.ArrowDtype(pa.float64())


MAX_EXPRESSION_LENGTH = 2000


def _str(s: Any) -> Any:
    if isinstance(s, pd.Series):
        return s if pd.api.types.is_string_dtype(s.dtype) else s.astype(_ARROW_STRING)
    return None if s is None else str(s)


def _dt(s: Any) -> Any:
    if isinstance(s, pd.Series):
        kind = getattr(s.dtype, "pyarrow_dtype", None)
        if kind is not None and (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
            return s
        return pd.to_datetime(s, format="mixed")
    return pd.Timestamp(s)


def _series_or(s: Any, vector: Callable[[pd.Series], Any], scalar: Callable[[Any], Any]) -> Any:
    if isinstance(s, pd.Series):
        return vector(s)
    return None if s is None else scalar(s)


def _substr(s: Any, start: int, length: int | None = None) -> Any:
    # 1-based like SQL: substr('abcdef', 2, 3) == 'bcd'.
    begin = max(int(start) - 1, 0)
    stop = None if length is None else begin + int(length)
    return _str(s).str.slice(begin, stop) if isinstance(s, pd.Series) else str(s)[begin:stop]


def _to_date(s: Any, fmt: str | None = None) -> Any:
    parsed = _to_timestamp(s, fmt)
    if isinstance(parsed, pd.Series):
        return parsed.astype(pd.ArrowDtype(pa.date32()))
    return None if parsed is None else parsed.date()


def _to_timestamp(s: Any, fmt: str | None = None) -> Any:
    if not isinstance(s, pd.Series):
        return None if s is None else pd.to_datetime(s, format=fmt)
    if fmt is None:
        return _dt(s)
    array = pc.strptime(pa.array(_str(s)), format=fmt, unit="us", error_is_null=True)
    return pd.Series(pd.arrays.ArrowExtensionArray(array), index=s.index)


def _days_between(a: Any, b: Any) -> Any:
    delta = _dt(b) - _dt(a)
    return delta.dt.days if isinstance(delta, pd.Series) else delta.days


def _add_days(s: Any, days: Any) -> Any:
    return _dt(s) + pd.to_timedelta(days, unit="D")


def _coalesce(*values: Any) -> Any:
    result = values[0]
    for value in values[1:]:
        if isinstance(result, pd.Series):
            result = (
                result.fillna(value)
                if not isinstance(value, pd.Series)
                else result.combine_first(value)
            )
        elif result is None:
            result = value
    return result


def _to_number(s: Any) -> Any:
    if isinstance(s, pd.Series):
        return pd.to_numeric(_str(s).str.strip(), errors="coerce").astype(_ARROW_FLOAT)
    return None if s is None else float(s)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    # nulls
    "isnull": lambda s: s.isna() if isinstance(s, pd.Series) else s is None,
    "notnull": lambda s: s.notna() if isinstance(s, pd.Series) else s is not None,
    "coalesce": _coalesce,
    # numbers
    "abs": lambda s: s.abs() if isinstance(s, pd.Series) else abs(s),
    "round": lambda s, n=0: s.round(n) if isinstance(s, pd.Series) else round(s, n),
    "floor": lambda s: _series_or(s, lambda v: pc_series(pc.floor, v), math.floor),
    "ceil": lambda s: _series_or(s, lambda v: pc_series(pc.ceil, v), math.ceil),
    "to_number": _to_number,
    # strings
    "lower": lambda s: _str(s).str.lower() if isinstance(s, pd.Series) else str(s).lower(),
    "upper": lambda s: _str(s).str.upper() if isinstance(s, pd.Series) else str(s).upper(),
    "strip": lambda s: _str(s).str.strip() if isinstance(s, pd.Series) else str(s).strip(),
    "trim": lambda s: _str(s).str.strip() if isinstance(s, pd.Series) else str(s).strip(),
    "length": lambda s: _str(s).str.len() if isinstance(s, pd.Series) else len(str(s)),
    "contains": lambda s, sub: _str(s).str.contains(sub, regex=False),
    "startswith": lambda s, p: _str(s).str.startswith(p),
    "endswith": lambda s, p: _str(s).str.endswith(p),
    "matches": lambda s, pattern: _str(s).str.fullmatch(pattern),
    "replace": lambda s, pattern, repl: _str(s).str.replace(pattern, repl, regex=True),
    "substr": _substr,
    "left": lambda s, n: _substr(s, 1, n),
    "right": lambda s, n: (
        _str(s).str.slice(-int(n)) if isinstance(s, pd.Series) else str(s)[-int(n) :]
    ),
    "concat": lambda *parts: _concat(parts),
    "string": _str,
    # dates and times
    "year": lambda s: _dt(s).dt.year if isinstance(s, pd.Series) else _dt(s).year,
    "month": lambda s: _dt(s).dt.month if isinstance(s, pd.Series) else _dt(s).month,
    "day": lambda s: _dt(s).dt.day if isinstance(s, pd.Series) else _dt(s).day,
    "hour": lambda s: _dt(s).dt.hour if isinstance(s, pd.Series) else _dt(s).hour,
    "minute": lambda s: _dt(s).dt.minute if isinstance(s, pd.Series) else _dt(s).minute,
    "weekday": lambda s: _dt(s).dt.day_of_week if isinstance(s, pd.Series) else _dt(s).weekday(),
    "date": lambda s: _to_date(s),
    "to_date": _to_date,
    "to_timestamp": _to_timestamp,
    "days_between": _days_between,
    "add_days": _add_days,
}


def pc_series(function: Callable[..., Any], series: pd.Series) -> pd.Series:
    """Apply an Arrow compute function to a Series, keeping its index."""
    return pd.Series(
        pd.arrays.ArrowExtensionArray(function(pa.array(series, from_pandas=True))),
        index=series.index,
    )


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ALLOWED_NODES = (
    ast.Expression,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.BinOp,
    ast.UnaryOp,
    ast.USub,
    ast.UAdd,
    ast.Not,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.Compare,
    ast.In,
    ast.NotIn,
    ast.Call,
    ast.IfExp,
    *_BINOPS,
    *_CMPOPS,
)


def _concat(parts: tuple[Any, ...]) -> Any:
    result: Any = ""
    for part in parts:
        result = result + _str(part)
    return result


@dataclass(frozen=True)
class Expression:
    """A parsed, allow-listed expression, ready to evaluate over a DataFrame."""

    source: str
    tree: ast.Expression

    @property
    def columns(self) -> set[str]:
        """Column names the expression reads."""
        names: set[str] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and node.id not in FUNCTIONS:
                names.add(node.id)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "col"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(str(node.args[0].value))
        return names

    def evaluate(self, frame: pd.DataFrame) -> Any:
        """Evaluate over ``frame``; returns a Series (or a scalar for constant expressions)."""
        return _Evaluator(frame, self.source).visit(self.tree.body)


@functools.lru_cache(maxsize=1024)
def parse_expression(source: str) -> Expression:
    """Parse and allow-list an expression; raises SpecError with a precise message."""
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise SpecError(
            f"invalid expression: longer than {MAX_EXPRESSION_LENGTH} characters "
            f"({len(source)}); split it into several derive steps"
        )
    try:
        with warnings.catch_warnings():
            # Regexes like '\d+' are invalid Python escapes; they stay literal, which is wanted.
            warnings.simplefilter("ignore", category=SyntaxWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise SpecError(
            f"invalid expression {source!r}: {exc.msg} at offset {exc.offset}"
        ) from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            raise SpecError(
                f"invalid expression {source!r}: attribute access (.{node.attr}) is not allowed; "
                "expressions may only use column names, literals, operators and the "
                "documented functions"
            )
        if not isinstance(node, _ALLOWED_NODES):
            raise SpecError(
                f"invalid expression {source!r}: {type(node).__name__} is not allowed "
                "(only column names, literals, arithmetic, comparisons, and/or/not, "
                "if-else and the documented functions)"
            )
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise SpecError(f"invalid expression {source!r}: name {node.id!r} is not allowed")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise SpecError(
                    f"invalid expression {source!r}: only plain function calls are allowed "
                    "(no methods, attributes, imports or builtins such as __import__)"
                )
            if node.func.id != "col" and node.func.id not in FUNCTIONS:
                raise SpecError(  # __import__, eval, open... are simply not on the list
                    f"invalid expression {source!r}: unknown function {node.func.id!r}; "
                    f"allowed: col, {', '.join(sorted(FUNCTIONS))}"
                )
            if node.keywords:
                raise SpecError(f"invalid expression {source!r}: keyword arguments not allowed")
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Mult)
            and any(
                isinstance(side, ast.Constant) and isinstance(side.value, str)
                for side in (node.left, node.right)
            )
        ):
            raise SpecError(f"invalid expression {source!r}: repeating a string is not allowed")
    return Expression(source=source, tree=tree)


class _Evaluator:
    def __init__(self, frame: pd.DataFrame, source: str) -> None:
        self.frame = frame
        self.source = source

    def column(self, name: str) -> pd.Series:
        if name not in self.frame.columns:
            raise SpecError(
                f"expression {self.source!r} refers to unknown column {name!r}; "
                f"columns are: {', '.join(map(str, self.frame.columns))}"
            )
        return self.frame[name]

    def visit(self, node: ast.AST) -> Any:
        match node:
            case ast.Constant(value=value):
                return value
            case ast.Name(id=name):
                if name in ("True", "False", "None"):
                    return {"True": True, "False": False, "None": None}[name]
                return self.column(name)
            case ast.List(elts=elts) | ast.Tuple(elts=elts):
                return [self.visit(e) for e in elts]
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                return -self.visit(operand)
            case ast.UnaryOp(op=ast.UAdd(), operand=operand):
                return self.visit(operand)
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                value = self.visit(operand)
                return ~_as_bool(value) if isinstance(value, pd.Series) else not value
            case ast.BinOp(left=left, op=op, right=right):
                return _BINOPS[type(op)](self.visit(left), self.visit(right))
            case ast.BoolOp(op=op, values=operands):
                result = _as_bool(self.visit(operands[0]))
                for operand in operands[1:]:
                    other = _as_bool(self.visit(operand))
                    result = (result & other) if isinstance(op, ast.And) else (result | other)
                return result
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                return self._compare(left, ops, comparators)
            case ast.IfExp(test=test, body=body, orelse=orelse):
                cond = _as_bool(self.visit(test))
                yes, no = self.visit(body), self.visit(orelse)
                if not isinstance(cond, pd.Series):
                    return yes if cond else no
                if isinstance(yes, pd.Series):
                    return yes.where(cond, no)
                if isinstance(no, pd.Series):
                    return no.mask(cond, yes)
                return pd.Series(np.where(cond, yes, no), index=self.frame.index)
            case ast.Call(func=ast.Name(id="col"), args=[ast.Constant(value=name)]):
                return self.column(str(name))
            case ast.Call(func=ast.Name(id=fname), args=args):
                return FUNCTIONS[fname](*[self.visit(a) for a in args])
        raise SpecError(f"invalid expression {self.source!r}: cannot evaluate {ast.dump(node)}")

    def _compare(self, left: ast.expr, ops: list[ast.cmpop], comparators: list[ast.expr]) -> Any:
        result: Any = None
        current = self.visit(left)
        for op, comp in zip(ops, comparators, strict=True):
            right = self.visit(comp)
            if isinstance(op, ast.In | ast.NotIn):
                if not isinstance(current, pd.Series):
                    raise SpecError(f"expression {self.source!r}: 'in' needs a column on the left")
                part = current.isin(right if isinstance(right, list) else [right])
                part = ~part if isinstance(op, ast.NotIn) else part
            else:
                part = _CMPOPS[type(op)](current, right)
            result = part if result is None else (result & part)
            current = right
        return result


def _as_bool(value: Any) -> Any:
    if isinstance(value, pd.Series):
        return value.fillna(False).astype(bool)
    return bool(value)
