"""Promotion gates: a candidate table passes when no gated metric is worse than the champion's beyond its tolerance.

After TFX's Evaluator blessing: each gate has a change threshold against the champion (how much
worse the candidate may be) and optional value thresholds (bounds the candidate must stay within).
Metrics are the evaluation's flat ``<name>_before`` (the champion, the table the round started
from) and ``<name>_after`` (the candidate), measured in one run on the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Gate:
    """One gated metric.

    Attributes:
        metric: the metric's name without ``_before``/``_after`` (``eval/pairs/foldoc/auc``).
        higher_is_better: whether a larger value is better.
        max_drop: how much worse than the champion the candidate may be (0: not worse at all).
        min_value: the candidate's value must be at least this, when set.
        max_value: the candidate's value must be at most this, when set.
    """

    metric: str
    higher_is_better: bool = True
    max_drop: float = 0.0
    min_value: float | None = None
    max_value: float | None = None

    def __post_init__(self) -> None:
        if not self.metric or self.metric.endswith(("_before", "_after")):
            raise ValueError(f"schedule.gates: metric must be a name without _before/_after, got {self.metric!r}")
        if self.max_drop < 0:
            raise ValueError(f"schedule.gates: max_drop of {self.metric} must be >= 0, got {self.max_drop}")


@dataclass(frozen=True)
class Verdict:
    """What the gates said: ``passed``, and why not (one reason per failed gate)."""

    passed: bool
    reasons: tuple[str, ...]
    checked: tuple[tuple[str, float | None, float | None], ...]  # (metric, champion, candidate)

    @property
    def reason(self) -> str:
        """The reasons on one line."""
        return "; ".join(self.reasons)


def judge(gates: Sequence[Gate], metrics: Mapping[str, float], *, integrity_ok: bool = True) -> Verdict:
    """Check every gate against one run's ``_before`` (champion) and ``_after`` (candidate) metrics.

    A gated metric the candidate lacks fails its gate (it was not measured: an evaluation file went
    missing, or no pair was covered); one the champion lacks is judged by its value thresholds only.
    """
    reasons: list[str] = [] if integrity_ok else ["integrity check failed"]
    checked: list[tuple[str, float | None, float | None]] = []
    for gate in gates:
        champion = metrics.get(f"{gate.metric}_before")
        candidate = metrics.get(f"{gate.metric}_after")
        checked.append((gate.metric, champion, candidate))
        if candidate is None:
            reasons.append(f"{gate.metric} was not measured on the candidate")
            continue
        if champion is not None:
            worse_by = champion - candidate if gate.higher_is_better else candidate - champion
            if worse_by > gate.max_drop + 1e-12:  # 0.70 - 0.69 is 0.0100000000000001 in floats
                reasons.append(f"{gate.metric} {candidate:.4f} is worse than the champion's {champion:.4f} "
                               f"by {worse_by:.4f} (allowed {gate.max_drop:g})")
        if gate.min_value is not None and candidate < gate.min_value:
            reasons.append(f"{gate.metric} {candidate:.4f} is below {gate.min_value:g}")
        if gate.max_value is not None and candidate > gate.max_value:
            reasons.append(f"{gate.metric} {candidate:.4f} is above {gate.max_value:g}")
    return Verdict(not reasons, tuple(reasons), tuple(checked))
