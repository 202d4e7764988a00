"""``python -m tasks.adapt``: load -> select -> induce -> evaluate -> export, in one MLflow run.

Only Hydra and the config schemas are imported up front, so a bad key or value fails within a
second; TensorFlow and the stages load once the config is known to be good.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pipeline import __version__
from pipeline.errors import InputError, TrainingDivergedError
from tasks.config import to_options
from tasks.tracking import check_reachable, git_tags, tracking_run

if TYPE_CHECKING:
    from tasks.adapt_stages import AdaptResult

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
REPO_ROOT = Path(__file__).resolve().parents[1]


def run(cfg: DictConfig, out_dir: Path, hydra_dir: Path | None = None) -> AdaptResult:
    """Validate ``cfg``, check tracking, and run :func:`adapt` inside one tracking run."""
    options = to_options(cfg)
    tracking = options.tracking
    if tracking.enabled:
        check_reachable(tracking.uri, tracking.connect_timeout, tracking.experiment)
    resolved = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    tags = {"task": "adapt", "package_version": __version__, **git_tags(REPO_ROOT)}
    from tasks.adapt_stages import adapt, config_sha256, summary

    with tracking_run(enabled=tracking.enabled, uri=tracking.uri, experiment=tracking.experiment,
                      run_name=tracking.run_name, config=resolved, hydra_dir=hydra_dir, tags=tags) as tracker:
        result = adapt(options, out_dir, tracker, config_sha256(resolved))
    print(summary(result, out_dir, tracker.run_id, tracker.uri))
    return result


@hydra.main(version_base="1.3", config_path="pkg://configs", config_name="conf")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the coverage after adaptation, for sweepers."""
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    hydra_dir = out_dir / hydra_cfg.output_subdir if hydra_cfg.output_subdir else None
    try:
        result = run(cfg, out_dir, hydra_dir)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except TrainingDivergedError as err:  # the run is marked FAILED with the step; the last good checkpoint stays
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)
    return result.metrics["vocab/coverage_after"]


if __name__ == "__main__":
    main()
