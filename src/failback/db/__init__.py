"""The SQLite layer: ``connect`` (apsw connections and their errors), ``schema`` (the schema model), ``sqltext``
(SQL tokens), ``digest`` (content digests and their worker processes), ``integrity`` (the source's integrity
checks), ``collations``.

``python -m failback.db.digest`` runs a digest worker: this face imports nothing but ``connect``, so starting a
worker never imports its module twice.
"""

from .connect import connect, database_error, open_source, quote

__all__ = ["connect", "database_error", "open_source", "quote"]
