"""Full-text search tables: FTS5 declarations parsed, FTS4 tokenizers mapped to the target's."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..db import sqltext
from ..db.schema import Table

FTS5_COMMANDS = {"delete", "delete-all", "rebuild", "optimize", "merge", "integrity-check", "automerge"}


FTS5_MAPPED = {"content", "content_rowid", "tokenize", "prefix", "contentless_delete", "contentless_unindexed"}


@dataclass(frozen=True)
class Fts5:
    """The options of an FTS5 table that matter for conversion."""

    columns: tuple[str, ...]
    unindexed: tuple[str, ...]
    content: str | None
    content_rowid: str | None
    tokenize: tuple[str, ...]
    prefix: tuple[str, ...]
    other_options: dict[str, str] = field(default_factory=dict)


def parse_fts5(t: Table) -> Fts5:
    """Read an FTS5 table's column list and options from its CREATE VIRTUAL TABLE arguments."""
    columns, unindexed, prefix = [], [], []
    opts: dict[str, str] = {}
    for arg in t.module_args:
        kv = sqltext.split_option(arg)
        if kv:
            if kv[0] == "prefix":
                prefix += kv[1].replace(",", " ").split()
            opts[kv[0]] = kv[1]
            continue
        words = [tok for tok in sqltext.tokenize(arg) if tok.kind not in ("ws", "comment")]
        columns.append(words[0].name)
        if any(w.text.upper() == "UNINDEXED" for w in words[1:]):
            unindexed.append(words[0].name)
    return Fts5(
        columns=tuple(columns),
        unindexed=tuple(unindexed),
        content=opts.get("content"),
        content_rowid=opts.get("content_rowid"),
        tokenize=tuple(_split_words(opts.get("tokenize", "unicode61"))),
        prefix=tuple(prefix),
        other_options={k: v for k, v in opts.items() if k not in FTS5_MAPPED},
    )


def _split_words(text: str) -> list[str]:
    return [t.name for t in sqltext.tokenize(text) if t.kind in ("word", "quoted", "string", "number")]


def fts4_tokenizer(words: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """FTS5 tokenize words → (FTS4 tokenize argument or None, notes about what differs)."""
    notes: list[str] = []
    w = list(words) or ["unicode61"]
    porter = w[0] == "porter"
    if porter:
        w = w[1:] or ["unicode61"]
    base, opts = w[0], w[1:]
    pairs = dict(zip(opts[0::2], opts[1::2], strict=False))
    if base == "unicode61" and not porter:
        kept = [f'"{k}={v}"' for k, v in pairs.items() if k in ("remove_diacritics", "tokenchars", "separators")]
        dropped = sorted(set(pairs) - {"remove_diacritics", "tokenchars", "separators"})
        if dropped:
            notes.append(f"unicode61 option(s) {', '.join(dropped)} have no FTS4 equivalent")
        return " ".join(["unicode61", *kept]), notes
    if porter:
        notes.append("porter stemming kept, but FTS4's porter folds case for ASCII only")
        return "porter", notes
    if base == "ascii":
        return "simple", notes
    return None, notes
