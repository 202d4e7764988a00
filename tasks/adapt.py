"""``python -m tasks.adapt``: load -> select -> induce -> train -> evaluate -> export, in one MLflow run.

Only Hydra and the config schemas are imported up front, so a bad key or value fails within a
second; TensorFlow and the stages load once the config is known to be good.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from tasks.config import to_options
from tasks.job import exit_codes, resolved, run_dirs, tracked

if TYPE_CHECKING:
    from tasks.adapt_stages import AdaptResult


def run(cfg: DictConfig, out_dir: Path, hydra_dir: Path | None = None) -> AdaptResult:
    """Validate ``cfg``, check tracking, and run :func:`adapt` inside one tracking run."""
    options = to_options(cfg)
    config = resolved(cfg)
    with tracked("adapt", options.tracking, config, hydra_dir) as tracker:
        from tasks.adapt_stages import adapt, config_sha256, summary

        result = adapt(options, out_dir, tracker, config_sha256(config))
    print(summary(result, out_dir, tracker.run_id, tracker.uri))
    return result


@hydra.main(version_base="1.3", config_path="pkg://configs", config_name="conf")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the coverage after adaptation, for sweepers."""
    with exit_codes():
        result = run(cfg, *run_dirs())
    return result.metrics["vocab/coverage_after"]


if __name__ == "__main__":
    main()
