"""Promotion gates: change thresholds against the champion, value thresholds, unmeasured metrics."""

from __future__ import annotations

import pytest

from pipeline.gates import Gate, judge


def test_a_candidate_no_worse_than_allowed_passes() -> None:
    metrics = {"eval/a/auc_before": 0.70, "eval/a/auc_after": 0.69, "eval/b/loss_before": 1.0,
               "eval/b/loss_after": 1.0}
    verdict = judge([Gate("eval/a/auc", max_drop=0.01), Gate("eval/b/loss", higher_is_better=False)], metrics)
    assert verdict.passed and verdict.reason == ""
    assert verdict.checked == (("eval/a/auc", 0.70, 0.69), ("eval/b/loss", 1.0, 1.0))


def test_each_failed_gate_gives_its_reason() -> None:
    metrics = {"eval/a/auc_before": 0.70, "eval/a/auc_after": 0.68, "eval/b/loss_before": 1.0,
               "eval/b/loss_after": 1.2, "eval/c/rho_after": 0.3}
    verdict = judge([Gate("eval/a/auc", max_drop=0.01), Gate("eval/b/loss", higher_is_better=False),
                     Gate("eval/c/rho", min_value=0.5), Gate("eval/d/acc")], metrics, integrity_ok=False)
    assert not verdict.passed
    assert verdict.reasons == (
        "integrity check failed",
        "eval/a/auc 0.6800 is worse than the champion's 0.7000 by 0.0200 (allowed 0.01)",
        "eval/b/loss 1.2000 is worse than the champion's 1.0000 by 0.2000 (allowed 0)",
        "eval/c/rho 0.3000 is below 0.5",  # no champion figure: judged by its value threshold only
        "eval/d/acc was not measured on the candidate",
    )


def test_gates_are_checked() -> None:
    with pytest.raises(ValueError, match="without _before/_after"):
        Gate("eval/a/auc_after")
    with pytest.raises(ValueError, match="max_drop of eval/a/auc must be >= 0"):
        Gate("eval/a/auc", max_drop=-0.1)
