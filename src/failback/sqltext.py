"""A small SQL tokenizer for rewriting schema SQL safely (never by regex over raw text).

It knows SQLite's quoting rules ('string', "ident", `ident`, [ident]), comments and blobs, so a rewrite
touches only real tokens: a COLLATE name inside a string literal is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

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
    return [Token(m.lastgroup or "op", m.group()) for m in _TOKEN.finditer(sql)]


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


def strip_generated(sql: str) -> str:
    """Turn generated columns into plain columns: drop ``[GENERATED ALWAYS] AS (expr) [VIRTUAL|STORED]``."""
    tokens = tokenize(sql)
    start, end = _table_body(tokens)
    out = [t.text for t in tokens]
    sig = [(i, t) for i, t in significant(tokens) if start < i < end]
    depth = 0
    k = 0
    while k < len(sig):
        t = sig[k][1]
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        elif (
            depth == 0
            and t.kind == "word"
            and t.text.upper() == "AS"
            and k + 1 < len(sig)
            and sig[k + 1][1].text == "("
        ):
            first = k
            if k >= 2 and sig[k - 1][1].text.upper() == "ALWAYS" and sig[k - 2][1].text.upper() == "GENERATED":
                first = k - 2
            j, level = k + 1, 0
            while j < len(sig):
                if sig[j][1].text == "(":
                    level += 1
                elif sig[j][1].text == ")":
                    level -= 1
                    if level == 0:
                        break
                j += 1
            if j + 1 < len(sig) and sig[j + 1][1].text.upper() in ("VIRTUAL", "STORED"):
                j += 1
            for idx in range(sig[first][0], sig[j][0] + 1):
                out[idx] = ""
            k = j
        k += 1
    return "".join(out)


def trigger_event(sql: str) -> str:
    """The event of a CREATE TRIGGER statement: ``INSERT``, ``DELETE`` or ``UPDATE``."""
    for tok in significant(tokenize(sql))[3:]:
        word = tok[1].text.upper()
        if tok[1].kind == "word" and word in ("INSERT", "DELETE", "UPDATE"):
            return word
    raise ValueError("not a CREATE TRIGGER statement")
