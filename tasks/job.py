"""What every task's entry point shares: its run directory, one tracked run around the job, exit codes."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pipeline import __version__
from pipeline.errors import InputError, IntegrityError, TrainingDivergedError
from tasks.config import TrackingConfig
from tasks.lock import LockedError
from tasks.tracking import NullTracker, check_reachable, git_tags, tracking_run

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTEGRITY = 4
EXIT_REJECTED = 5
EXIT_LOCKED = 6
REPO_ROOT = Path(__file__).resolve().parents[1]


def run_dirs() -> tuple[Path, Path | None]:
    """The job's output directory and its ``.hydra`` folder (None when Hydra writes none)."""
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    return out_dir, out_dir / hydra_cfg.output_subdir if hydra_cfg.output_subdir else None


def run_tags(task: str) -> dict[str, str]:
    """The tags every run of ours carries: the task, the package version, and the git commit when known."""
    return {"task": task, "package_version": __version__, **git_tags(REPO_ROOT)}


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain values, interpolations resolved (logged as params and ``config.yaml``)."""
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))


@contextmanager
def tracked(task: str, tracking: TrackingConfig, config: dict[str, Any], hydra_dir: Path | None,
            tags: Mapping[str, str] | None = None) -> Iterator[NullTracker]:
    """One tracking run for the job (tag ``task``, and ``tags``), after checking the store answers."""
    if tracking.enabled:
        check_reachable(tracking.uri, tracking.connect_timeout, tracking.experiment)
    tags = {**run_tags(task), **(tags or {})}
    with tracking_run(enabled=tracking.enabled, uri=tracking.uri, experiment=tracking.experiment,
                      run_name=tracking.run_name, config=config, hydra_dir=hydra_dir, tags=tags) as tracker:
        yield tracker


@contextmanager
def exit_codes() -> Iterator[None]:
    """Known failures end the process with one ``error:`` line and their own exit code (see the README)."""
    try:
        yield
    except InputError as err:  # nothing is exported
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except TrainingDivergedError as err:  # the run is marked FAILED with the step; the last good checkpoint stays
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)
    except IntegrityError as err:  # nothing is exported
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_INTEGRITY)
    except LockedError as err:  # another scheduled run is at work; this one did nothing
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_LOCKED)
    except Exception as err:
        # MLflow's and requests' errors, matched by module: importing mlflow here would cost every start a second
        if not type(err).__module__.startswith(("mlflow", "requests", "urllib3")):
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:600]
        print(f"error: tracking failed: {first} (check that the tracking server is up and tracking.uri is right, "
              "then run the job again)", file=sys.stderr)
        sys.exit(EXIT_FAILED)
