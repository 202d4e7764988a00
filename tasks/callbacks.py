"""Hydra callbacks of every task: one parent MLflow run per sweep (``-m``), each job's run nested under it.

How the parent's id reaches a job's :func:`tasks.tracking.tracking_run`: it reads the environment
variable ``PARENT_RUN_ENV``, which this callback sets

- in the launching process, at ``on_multirun_start`` (the basic launcher runs jobs in that process);
- in the process that runs a job, at ``on_job_start``, from the callback's own copy of the id (a
  launcher ships its callbacks to its workers pickled, e.g. joblib's loky workers), else from the file
  ``<sweep dir>/mlflow_parent_run_id`` written at ``on_multirun_start`` (for launchers that do not).

Loky workers do inherit the launching process's environment, but only as it was when the worker was
spawned, and loky reuses its workers across ``Parallel`` calls; setting the variable per job keeps a
reused worker from nesting a job under an earlier sweep. Every change is undone at ``on_job_end`` and
``on_multirun_end``, so a later run that is not part of a sweep is never nested; a single run (no
``-m``) clears any inherited value for its duration.

The parent ends FINISHED when every child run it finds (tag ``mlflow.parentRunId``, in the sweep's
experiment) finished, FAILED when one failed, was killed or is still running; when the sweep stops
before ``on_multirun_end`` (a job's error ends Hydra), it is marked FAILED at interpreter exit.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from tasks.job import exit_codes, run_tags
from tasks.tracking import (
    PARENT_RUN_ENV,
    PARENT_RUN_TAG,
    active_experiment_id,
    check_reachable,
    redact_override,
)

log = logging.getLogger(__name__)

PARENT_RUN_FILE = "mlflow_parent_run_id"


class SweepParentRun(Callback):
    """Open a parent MLflow run for a sweep and nest every job's run under it (see the module docstring).

    Registered in ``configs/hydra/default.yaml``; does nothing when the primary config has no
    ``tracking`` group or ``tracking.enabled`` is false. Only strings are kept on the instance, so a
    launcher can pickle it to its workers.
    """

    def __init__(self) -> None:
        self._run_id: str | None = None
        self._uri: str | None = None
        self._experiment_id: str | None = None
        self._env_before_sweep: str | None = None
        self._env_before_job: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Open the parent run, then publish its id in the environment and in the sweep directory."""
        self._env_before_sweep = os.environ.pop(PARENT_RUN_ENV, None)
        marker = _sweep_dir(config) / PARENT_RUN_FILE
        marker.unlink(missing_ok=True)  # a sweep dir reused from an earlier sweep must not nest under its parent
        tracking = OmegaConf.select(config, "tracking")
        if not isinstance(tracking, DictConfig) or not tracking.get("enabled", False):
            return
        from mlflow import MlflowClient
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        uri, experiment = str(tracking.uri), str(tracking.experiment)
        with exit_codes():  # an unusable store fails the sweep like it fails a job: one line, exit 2
            check_reachable(uri, float(tracking.get("connect_timeout", 10.0)), experiment)
            client = MlflowClient(tracking_uri=uri)
            experiment_id = active_experiment_id(client, experiment)
        task = str(config.hydra.job.name)
        sweep_dir = _sweep_dir(config)
        overrides = [redact_override(str(o)) for o in OmegaConf.to_container(config.hydra.overrides.task) or []]
        tags = {**run_tags(f"{task}-sweep"), "sweep.dir": str(sweep_dir),
                "sweep.launcher": str(OmegaConf.select(config, "hydra.launcher._target_"))}
        run = client.create_run(experiment_id, run_name=f"sweep {task} {sweep_dir.name}", tags=tags)
        client.log_param(run.info.run_id, "sweep.overrides", json.dumps(overrides)[:MAX_PARAM_VAL_LENGTH])
        self._run_id, self._uri, self._experiment_id = run.info.run_id, uri, experiment_id
        atexit.register(self._fail_if_open)
        os.environ[PARENT_RUN_ENV] = run.info.run_id
        sweep_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{run.info.run_id}\n")
        log.info("MLflow parent run of the sweep: %s", run.info.run_id)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Point this job's process at the sweep's parent run (or at none, outside a sweep)."""
        self._env_before_job = os.environ.get(PARENT_RUN_ENV)
        parent = None
        if OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN:
            parent = self._run_id or _read_marker(_sweep_dir(config) / PARENT_RUN_FILE)
        log.debug("job %s (pid %d): parent run %s; the environment had %s, the callback %s",
                  OmegaConf.select(config, "hydra.job.num"), os.getpid(), parent, self._env_before_job, self._run_id)
        _set_env(parent)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """Restore the environment variable as it was before the job."""
        _set_env(self._env_before_job)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """End the parent run FINISHED, or FAILED when one of its children did not finish; restore the environment."""
        try:
            if self._run_id is not None:
                self._end()
        finally:
            _set_env(self._env_before_sweep)

    def _end(self, stopped: bool = False) -> None:
        from mlflow import MlflowClient

        assert self._run_id is not None and self._experiment_id is not None
        run_id, self._run_id = self._run_id, None
        atexit.unregister(self._fail_if_open)
        client = MlflowClient(tracking_uri=self._uri)
        children = client.search_runs([self._experiment_id], filter_string=f"tags.`{PARENT_RUN_TAG}` = '{run_id}'")
        failed = [c.info.run_id for c in children if c.info.status != "FINISHED"]
        client.log_metric(run_id, "sweep/children", float(len(children)))
        client.log_metric(run_id, "sweep/children_not_finished", float(len(failed)))
        if stopped:
            client.set_tag(run_id, "error", "the sweep stopped before every job returned")
        elif failed:
            client.set_tag(run_id, "error", f"child runs not FINISHED: {', '.join(failed)}")
        client.set_terminated(run_id, status="FAILED" if stopped or failed else "FINISHED")

    def _fail_if_open(self) -> None:
        """At interpreter exit: a parent still open means the sweep ended early (a job's error ended Hydra)."""
        if self._run_id is None:
            return
        try:
            self._end(stopped=True)
        except Exception as err:  # noqa: BLE001 - at exit, a store that no longer answers is only worth a warning
            log.warning("could not mark the sweep's parent run FAILED: %s", err)


def _sweep_dir(config: DictConfig) -> Path:
    """The sweep's folder, against the folder Hydra started in (with ``hydra.job.chdir`` a job runs in its own)."""
    started_in = OmegaConf.select(config, "hydra.runtime.cwd", default=None) or os.getcwd()
    return Path(str(started_in), str(config.hydra.sweep.dir))


def _read_marker(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _set_env(value: str | None) -> None:
    if value:
        os.environ[PARENT_RUN_ENV] = value
    else:
        os.environ.pop(PARENT_RUN_ENV, None)
