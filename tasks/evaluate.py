"""``python -m tasks.evaluate``: score any table on the evaluation sets and, against its base, check and compare it.

Only Hydra and the config schemas are imported up front, so a bad key or value fails within a
second; TensorFlow and the evaluators load once the config is known to be good.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from tasks.config import to_evaluate_options
from tasks.job import exit_codes, resolved, run_dirs, tracked

if TYPE_CHECKING:
    from tasks.evaluation import EvaluateResult


def run(cfg: DictConfig, out_dir: Path, hydra_dir: Path | None = None) -> EvaluateResult:
    """Validate ``cfg``, check tracking, and run :func:`evaluate` inside one tracking run."""
    options = to_evaluate_options(cfg)
    with tracked("evaluate", options.tracking, resolved(cfg), hydra_dir) as tracker:
        from tasks.evaluation import evaluate

        return evaluate(options, out_dir, tracker)


@hydra.main(version_base="1.3", config_path="pkg://configs", config_name="evaluate_task")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the first related-pair AUC (or similarity rho) of the table, for sweepers."""
    with exit_codes():
        result = run(cfg, *run_dirs())
    heads = [v for k, v in result.metrics.items() if k.endswith(("/auc_after", "/rho_after"))]
    return heads[0] if heads else None


if __name__ == "__main__":
    main()
