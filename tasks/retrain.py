"""``python -m tasks.retrain``: the scheduled job (cron, a systemd timer, Airflow) keeping a registered table current.

Only Hydra and the config schemas are imported up front, so a bad key or value fails within a
second; TensorFlow and MLflow load once the config is known to be good.

Exit codes: 0 promoted or nothing new, 5 rejected, 6 another run holds the lock, and adapt's own
(1 an unexpected failure, 2 bad input, 3 fine-tuning diverged, 4 integrity).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from tasks.config import to_retrain_options
from tasks.job import EXIT_REJECTED, exit_codes, resolved, run_dirs

if TYPE_CHECKING:
    from tasks.retraining import RoundResult


def run(cfg: DictConfig, hydra_dir: Path | None = None) -> RoundResult:
    """Validate ``cfg`` and run one round (see :mod:`tasks.retraining`)."""
    options = to_retrain_options(cfg)
    from tasks.retraining import retrain

    result = retrain(options, resolved(cfg), hydra_dir)
    if result.status == "noop":
        print(f"nothing new: every shard of {options.schedule.source} was learned by an earlier round")
    else:
        print(f"round {result.round_id}: {len(result.new_shards)} new shards, {len(result.replayed)} replayed -> "
              f"models:/{options.name}/{result.version} {result.status}"
              + (f" ({result.reason})" if result.reason else ""))
    return result


@hydra.main(version_base="1.3", config_path="pkg://configs", config_name="retrain_task")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with exit_codes():
        result = run(cfg, run_dirs()[1])
    if result.status == "rejected":
        sys.exit(EXIT_REJECTED)


if __name__ == "__main__":
    main()
