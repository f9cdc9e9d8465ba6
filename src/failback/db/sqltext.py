"""A small SQL tokenizer for rewriting schema SQL safely (never by regex over raw text).

It knows SQLite's quoting rules ('string', "ident", `ident`, [ident]), comments and blobs, so a rewrite
touches only real tokens: a COLLATE name inside a string literal is left alone.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import apsw

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^']|'')*'?)
  | (?P<blob>[xX]'[0-9a-fA-F]*'?)
  | (?P<quoted>"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?)
  | (?P<word>[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)
  | (?P<op>\|\||<<|>>|<=|>=|==|!=|<>|->>|->|.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    """One token: its kind (ws, comment, string, blob, quoted, word, number, op) and its text."""

    kind: str
    text: str

    @property
    def name(self) -> str:
        """The identifier this token names (quotes removed), or its text."""
        if self.kind == "quoted":
            t = self.text
            if t[0] == "[":
                return t[1:-1]
            q = t[0]
            return t[1:-1].replace(q * 2, q)
        if self.kind == "string":
            return self.text[1:-1].replace("''", "'")
        return self.text

    @property
    def is_name(self) -> bool:
        return self.kind in ("word", "quoted", "string")


def tokenize(sql: str) -> list[Token]:
    """Split SQL into tokens; concatenating their texts gives ``sql`` back exactly."""
    return list(_tokens(sql))


@functools.lru_cache(maxsize=4096)
def _tokens(sql: str) -> tuple[Token, ...]:
    """The tokens of ``sql``, kept: a run reads the same schema SQL many times (plan, drift, proofs, statements),
    and a fleet worker the same schema for every tenant (tokens are immutable)."""
    return tuple(Token(m.lastgroup or "op", m.group()) for m in _TOKEN.finditer(sql))


def significant(tokens: list[Token]) -> list[tuple[int, Token]]:
    """(index, token) pairs without whitespace and comments."""
    return [(i, t) for i, t in enumerate(tokens) if t.kind not in ("ws", "comment")]


def collations(sql: str) -> set[str]:
    """Names used after COLLATE in ``sql``."""
    sig = significant(tokenize(sql))
    return {
        sig[k + 1][1].name
        for k, (_, tok) in enumerate(sig[:-1])
        if tok.kind == "word" and tok.text.upper() == "COLLATE" and sig[k + 1][1].is_name
    }


def replace_collations(sql: str, mapping: Callable[[str], str | None]) -> str:
    """Rewrite ``COLLATE name`` where ``mapping(name)`` returns a replacement (None keeps the name)."""
    tokens = tokenize(sql)
    sig = significant(tokens)
    out = [t.text for t in tokens]
    for k, (_, tok) in enumerate(sig[:-1]):
        if tok.kind == "word" and tok.text.upper() == "COLLATE":
            idx, name_tok = sig[k + 1]
            new = mapping(name_tok.name) if name_tok.is_name else None
            if new is not None:
                out[idx] = new
    return "".join(out)


def mentions(sql: str, name: str) -> bool:
    """True when ``sql`` uses the identifier ``name`` (case-insensitive, any quoting)."""
    lowered = name.lower()
    return any(t.kind in ("word", "quoted") and t.name.lower() == lowered for t in tokenize(sql))


@dataclass(frozen=True)
class VirtualTableSql:
    """The parts of ``CREATE VIRTUAL TABLE name USING module(args)``."""

    module: str
    args: tuple[str, ...]


def parse_virtual_table(sql: str) -> VirtualTableSql:
    """Module name and top-level comma-separated arguments (raw text, stripped)."""
    tokens = tokenize(sql)
    sig = significant(tokens)
    using = next(k for k, (_, t) in enumerate(sig) if t.kind == "word" and t.text.upper() == "USING")
    module = sig[using + 1][1].name
    args: list[str] = []
    if using + 2 < len(sig) and sig[using + 2][1].text == "(":
        start = sig[using + 2][0] + 1
        depth, current = 0, list[str]()
        for tok in tokens[start:]:
            if tok.text == "(":
                depth += 1
            elif tok.text == ")":
                if depth == 0:
                    break
                depth -= 1
            elif tok.text == "," and depth == 0:
                args.append("".join(current).strip())
                current = []
                continue
            current.append(tok.text)
        args.append("".join(current).strip())
    return VirtualTableSql(module, tuple(a for a in args if a))


def split_option(arg: str) -> tuple[str, str] | None:
    """``key = value`` → (key lowercased, value unquoted); anything else → None."""
    tokens = tokenize(arg)
    sig = significant(tokens)
    if len(sig) < 3 or sig[1][1].text != "=" or sig[0][1].kind not in ("word", "quoted", "string"):
        return None
    value = "".join(t.text for t in tokens[sig[1][0] + 1 :]).strip()
    rest = significant(tokenize(value))
    if len(rest) == 1 and rest[0][1].kind in ("string", "quoted"):
        value = rest[0][1].name
    return sig[0][1].name.lower(), value


def string_literal(value: str) -> str:
    """Quote ``value`` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _table_body(tokens: list[Token]) -> tuple[int, int]:
    """Token indexes of the parentheses around a CREATE TABLE's column list."""
    start = next(i for i, t in enumerate(tokens) if t.text == "(")
    depth = 0
    for i in range(start, len(tokens)):
        if tokens[i].text == "(":
            depth += 1
        elif tokens[i].text == ")":
            depth -= 1
            if depth == 0:
                return start, i
    raise ValueError("unbalanced parentheses")


def index_where(sql: str) -> str | None:
    """The WHERE expression of a partial ``CREATE INDEX`` (text after the column list), or None."""
    tokens = tokenize(sql)
    _, end = _table_body(tokens)
    rest = significant(tokens[end + 1 :])
    if not rest or rest[0][1].text.upper() != "WHERE":
        return None
    return "".join(t.text for t in tokens[end + 2 + rest[0][0] :]).strip().rstrip(";").strip()


def strip_table_options(sql: str, options: set[str]) -> str:
    """Remove table options after the column list (e.g. ``STRICT``), keeping the others and their commas."""
    tokens = tokenize(sql)
    _, end = _table_body(tokens)
    groups: list[list[str]] = [[]]
    for t in tokens[end + 1 :]:
        if t.text == ",":
            groups.append([])
        elif t.kind not in ("ws", "comment"):
            groups[-1].append(t.text)
    kept = [" ".join(g) for g in groups if g and " ".join(g).upper() not in options]
    return "".join(t.text for t in tokens[: end + 1]) + (" " + ", ".join(kept) if kept else "")


@dataclass(frozen=True)
class TableClause:
    """A clause of a CREATE TABLE holding an expression: a column's ``DEFAULT (expr)``, its generated
    ``[GENERATED ALWAYS] AS (expr) [VIRTUAL|STORED]``, or a column or table ``[CONSTRAINT name] CHECK (expr)``.
    ``span`` is the clause's token range (start, end inclusive) in ``tokenize(sql)`` (a table CHECK's
    includes the comma before it), so the clause can be removed; ``stored`` marks a STORED generated column."""

    kind: str  # default, generated, check
    column: str | None
    expr: str
    span: tuple[int, int]
    stored: bool = False


def _close(sig: list[tuple[int, Token]], k: int) -> int:
    """Position in ``sig`` of the parenthesis closing the one at ``sig[k]``."""
    depth = 0
    for j in range(k, len(sig)):
        if sig[j][1].text == "(":
            depth += 1
        elif sig[j][1].text == ")":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced parentheses")


_TABLE_CONSTRAINTS = {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"}


def table_clauses(sql: str) -> list[TableClause]:
    """The expression clauses of a CREATE TABLE statement, in order (see :class:`TableClause`)."""
    tokens = tokenize(sql)
    start, end = _table_body(tokens)
    sig = [(i, t) for i, t in significant(tokens) if start < i < end]
    out: list[TableClause] = []
    k, column, first_of_def, comma = 0, None, True, start
    while k < len(sig):
        i, t = sig[k]
        word = t.text.upper() if t.kind == "word" else ""
        if t.text == ",":
            first_of_def, comma = True, i
            k += 1
            continue
        if first_of_def:
            column = None if word in _TABLE_CONSTRAINTS else t.name
            first_of_def = False
        begin = k
        if word == "CONSTRAINT" and k + 2 < len(sig) and sig[k + 2][1].text.upper() == "CHECK":
            k += 2  # the constraint's name goes with its CHECK
            word = "CHECK"
        if word == "GENERATED" and k + 2 < len(sig) and sig[k + 2][1].text.upper() == "AS":
            k += 2
            word = "AS"
        kind = {"DEFAULT": "default", "CHECK": "check", "AS": "generated"}.get(word)
        if kind and k + 1 < len(sig) and sig[k + 1][1].text == "(":
            close = _close(sig, k + 1)
            last = close
            stored = False
            if kind == "generated" and close + 1 < len(sig) and sig[close + 1][1].text.upper() in ("VIRTUAL", "STORED"):
                last = close + 1
                stored = sig[last][1].text.upper() == "STORED"
            first = comma if kind == "check" and column is None else sig[begin][0]
            expr = "".join(x.text for x in tokens[sig[k + 1][0] + 1 : sig[close][0]]).strip()
            out.append(TableClause(kind, column, expr, (first, sig[last][0]), stored))
            k = last + 1
            continue
        if t.text == "(":
            k = _close(sig, k) + 1
            continue
        k += 1
    return out


def remove_spans(sql: str, spans: Iterable[tuple[int, int]]) -> str:
    """``sql`` without the token ranges ``spans`` (start, end inclusive, indexes into ``tokenize(sql)``)."""
    tokens = tokenize(sql)
    gone = {i for a, b in spans for i in range(a, b + 1)}
    return "".join(t.text for i, t in enumerate(tokens) if i not in gone)


def strip_generated(sql: str) -> str:
    """Turn generated columns into plain columns: drop ``[GENERATED ALWAYS] AS (expr) [VIRTUAL|STORED]``."""
    return remove_spans(sql, (c.span for c in table_clauses(sql) if c.kind == "generated"))


# A name followed by "(" after one of these is a table, a table-valued function, a module or a type, never
# a scalar function call.
_NOT_A_CALL_AFTER = {".", "TABLE", "VIEW", "INTO", "REFERENCES", "EXISTS", "FROM", "JOIN", "IN", "USING", "AS"}
_KEYWORDS = {k.upper() for k in apsw.keywords}


def function_calls(sql: str) -> list[tuple[str, int]]:
    """(name, number of arguments) of every scalar or aggregate function call in ``sql``, by tokens: names in
    strings, quoted identifiers used as tables and comments do not count. ``x REGEXP y`` calls ``regexp``
    with two arguments. Table-valued functions (``FROM json_each(x)``), CTE and view column lists, types
    (``CAST(x AS VARCHAR(9))``) and SQL keywords are not calls."""
    sig = significant(tokenize(sql))
    calls: list[tuple[str, int]] = []
    for k, (_, t) in enumerate(sig):
        if t.kind == "word" and t.text.upper() == "REGEXP":
            calls.append(("regexp", 2))
        if t.kind not in ("word", "quoted") or k + 1 >= len(sig) or sig[k + 1][1].text != "(":
            continue
        if t.kind == "word" and t.text.upper() in _KEYWORDS:
            continue
        if k > 0 and sig[k - 1][1].text.upper() in _NOT_A_CALL_AFTER:
            continue
        close = _close(sig, k + 1)
        after = [x.text.upper() for _, x in sig[close + 1 : close + 3]]
        if after[:1] == ["AS"] and after[1:2] and after[1] in ("(", "MATERIALIZED", "NOT"):
            continue  # a CTE's column list: name(a, b) AS (SELECT …)
        calls.append((t.name, _arity(sig[k + 2 : close])))
    return calls


def _arity(args: list[tuple[int, Token]]) -> int:
    """Number of arguments in a call's argument tokens (``*`` and nothing: 0; an ORDER BY ends them)."""
    if not args or (len(args) == 1 and args[0][1].text == "*"):
        return 0
    depth, n = 0, 1
    for _, t in args:
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        elif depth == 0 and t.text == ",":
            n += 1
        elif depth == 0 and t.kind == "word" and t.text.upper() == "ORDER":
            break
    return n


def index_parts(sql: str) -> str:
    """The expressions of a CREATE INDEX: its column list and its WHERE clause (text after ``ON table``)."""
    tokens = tokenize(sql)
    start, _ = _table_body(tokens)
    return "".join(t.text for t in tokens[start:])


def trigger_event(sql: str) -> str:
    """The event of a CREATE TRIGGER statement: ``INSERT``, ``DELETE`` or ``UPDATE``."""
    for tok in significant(tokenize(sql))[3:]:
        word = tok[1].text.upper()
        if tok[1].kind == "word" and word in ("INSERT", "DELETE", "UPDATE"):
            return word
    raise ValueError("not a CREATE TRIGGER statement")
