"""The rollback as its callers start it: ``Rollback(cfg, config_path, Options(...)).run()``, ``Rollback.resume``
and ``abort_run``; what a run did comes back as an ``Outcome``.

snapshot → backup → assess → convert → verify → switch → postcheck → report: the sequence, its checkpoints,
signals, resume and abort are in ``driver``; each step is a function in ``steps``; the switch and its undo
(target file and app config) are in ``switch``.
"""

from .driver import Outcome, Rollback, abort_run
from .steps import Options

__all__ = ["Options", "Outcome", "Rollback", "abort_run"]
