"""Automated rollback triggers: watch, check, hold, release (issue 7, in progress)."""
