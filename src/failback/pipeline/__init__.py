"""The rollback: ``rollback`` (how callers start, resume and abort one), ``driver`` (its sequence, checkpoints,
resume and abort), ``steps`` (one function per step), ``switch`` (the target file and the app config, and the undo),
``export`` (build and verify a target), ``debt`` (what emergency mode defers), ``postcheck`` (timings after).

No imports here: ``guard`` uses ``switch``, and ``driver`` uses ``guard``."""
