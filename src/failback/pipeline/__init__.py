"""The rollback's steps: ``rollback`` (the run, its journal, resume and abort), ``switch`` (the app config),
``export`` (build and verify a target), ``debt`` (what emergency mode defers), ``postcheck`` (timings after).

No imports here: ``guard`` uses ``switch``, and ``rollback`` uses ``guard``."""
