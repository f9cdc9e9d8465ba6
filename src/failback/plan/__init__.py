"""The conversion plan (pure): ``model`` (the plan's data), ``planner`` (schema + profile + options → a plan),
``fts`` (search tables), ``proofs`` (the target engine's verdicts applied to the plan)."""

from .model import Action, Decision, Plan, load_plan
from .planner import plan_conversion
from .proofs import apply_proofs

__all__ = ["Action", "Decision", "Plan", "apply_proofs", "load_plan", "plan_conversion"]
