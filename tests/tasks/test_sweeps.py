"""Sweeps (``-m``) in MLflow: one parent run per sweep, every job's run nested under it, nothing otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
from hydra.types import RunMode
from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from planted import Planted

from tasks.callbacks import PARENT_RUN_FILE, SweepParentRun
from tasks.tracking import PARENT_RUN_ENV, PARENT_RUN_TAG, tracking_run

SWEEP = ["train=none", "vocab.min_count=1,1000", "hydra.sweep.dir=sweep"]


def adapt(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EMBADAPT_CACHE": str(cwd / "cache")}
    env.pop(PARENT_RUN_ENV, None)
    return subprocess.run([sys.executable, "-m", "tasks.adapt", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def planted_args(planted: Planted, tmp_path: Path) -> list[str]:
    return ["embedding=file", f"embedding.path={planted.table_path}", "corpus=files",
            f"corpus.paths=[{planted.corpus_path}]", "progress=false", f"tracking.uri={store(tmp_path)}",
            "tracking.experiment=test"]


def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


def runs(tmp_path: Path) -> list[Run]:
    client = MlflowClient(tracking_uri=store(tmp_path))
    experiment = client.get_experiment_by_name("test")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def split(found: list[Run]) -> tuple[list[Run], list[Run]]:
    """(parent runs, job runs), told apart by their ``task`` tag."""
    parents = [r for r in found if r.data.tags.get("task") == "adapt-sweep"]
    return parents, [r for r in found if r.data.tags.get("task") == "adapt"]


def assert_one_sweep(tmp_path: Path, jobs: int) -> Run:
    parents, children = split(runs(tmp_path))
    assert len(parents) == 1 and len(children) == jobs
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "sweep adapt sweep"
    assert "vocab.min_count=1,1000" in json.loads(parent.data.params["sweep.overrides"])
    assert parent.data.metrics == {"sweep/children": jobs, "sweep/children_not_finished": 0}
    assert [c.data.tags.get(PARENT_RUN_TAG) for c in children] == [parent.info.run_id] * jobs
    assert all(c.info.status == "FINISHED" for c in children)
    assert PARENT_RUN_TAG not in parent.data.tags
    assert (tmp_path / "sweep" / PARENT_RUN_FILE).read_text().strip() == parent.info.run_id
    return parent


@pytest.mark.slow
def test_sweep_nests_its_jobs_under_one_parent_run(planted: Planted, tmp_path: Path) -> None:
    done = adapt(["-m", *planted_args(planted, tmp_path), *SWEEP], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_one_sweep(tmp_path, jobs=2)
    new = [json.loads((tmp_path / "sweep" / str(i) / "metrics.json").read_text())["vocab/new_tokens"] for i in (0, 1)]
    assert new == [2, 0]


@pytest.mark.slow
def test_joblib_sweep_nests_jobs_run_in_worker_processes(planted: Planted, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="the sweeps extra is not installed")
    done = adapt(["-m", *planted_args(planted, tmp_path), *SWEEP, "hydra/launcher=joblib",
                  "hydra.launcher.n_jobs=2"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr
    parent = assert_one_sweep(tmp_path, jobs=2)
    assert parent.data.tags["sweep.launcher"].endswith("JoblibLauncher")


@pytest.mark.slow
def test_single_run_is_not_nested_even_under_a_stale_parent(planted: Planted, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the working directory
    client = MlflowClient(tracking_uri=store(tmp_path))
    stale = client.create_run(client.create_experiment("test"), run_name="an earlier sweep").info.run_id
    client.set_terminated(stale)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / PARENT_RUN_FILE).write_text(stale)  # left by an earlier sweep in the same folder
    monkeypatch.setenv(PARENT_RUN_ENV, stale)  # and leaked into the environment
    done = subprocess.run([sys.executable, "-m", "tasks.adapt", *planted_args(planted, tmp_path), "train=none",
                           "hydra.run.dir=out", "hydra.sweep.dir=sweep"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False,
                          env={**os.environ, "EMBADAPT_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    parents, children = split(runs(tmp_path))
    assert parents == [] and len(children) == 1
    assert PARENT_RUN_TAG not in children[0].data.tags


@pytest.mark.slow
def test_sweep_without_tracking_records_nothing(planted: Planted, tmp_path: Path) -> None:
    done = adapt(["-m", *planted_args(planted, tmp_path), *SWEEP, "tracking=disabled"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "sweep" / "1" / "metrics.json").is_file()
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "sweep" / PARENT_RUN_FILE).exists()


@pytest.mark.slow
def test_sweep_stopped_by_a_failing_job_fails_its_parent(planted: Planted, tmp_path: Path) -> None:
    done = adapt(["-m", *planted_args(planted, tmp_path), "train=none", "vocab.min_count=1,-1",
                  "hydra.sweep.dir=sweep"], tmp_path)
    assert done.returncode == 2 and "vocab.min_count must be at least 1, got -1" in done.stderr
    parents, children = split(runs(tmp_path))
    assert len(parents) == 1 and [c.info.status for c in children] == ["FINISHED"]
    assert parents[0].info.status == "FAILED"
    assert parents[0].data.tags["error"] == "the sweep stopped before every job returned"
    assert children[0].data.tags[PARENT_RUN_TAG] == parents[0].info.run_id


def sweep_config(tmp_path: Path, mode: RunMode = RunMode.MULTIRUN, enabled: bool = True) -> DictConfig:
    """The keys the callback reads, as Hydra composes them for a sweep."""
    return OmegaConf.create({
        "tracking": {"enabled": enabled, "uri": store(tmp_path), "experiment": "test", "connect_timeout": 5.0},
        "hydra": {"mode": mode, "sweep": {"dir": "sweep"}, "runtime": {"cwd": str(tmp_path)},
                  "job": {"name": "adapt", "num": 0},
                  "overrides": {"task": ["vocab.min_count=1,2", "hf_token=hunter2"]},
                  "launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}},
    })


def test_a_failed_child_fails_the_parent_and_the_environment_is_restored(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the working directory
    monkeypatch.setenv(PARENT_RUN_ENV, "outer")
    config, callback = sweep_config(tmp_path), SweepParentRun()
    callback.on_multirun_start(config)
    parent = os.environ[PARENT_RUN_ENV]
    assert parent != "outer"
    for fails in (False, True):
        callback.on_job_start(config)
        with pytest.raises(RuntimeError) if fails else nullcontext(), \
                tracking_run(enabled=True, uri=store(tmp_path), experiment="test", run_name=None, config={},
                             hydra_dir=None, tags={"task": "adapt"}):
            if fails:
                raise RuntimeError("diverged")
        callback.on_job_end(config, job_return=None)
        assert os.environ[PARENT_RUN_ENV] == parent
    callback.on_multirun_end(config)
    assert os.environ[PARENT_RUN_ENV] == "outer"

    parents, children = split(runs(tmp_path))
    assert [p.info.run_id for p in parents] == [parent] and parents[0].info.status == "FAILED"
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED"]
    (failed,) = [c for c in children if c.info.status == "FAILED"]
    assert parents[0].data.tags["error"] == f"child runs not FINISHED: {failed.info.run_id}"
    assert json.loads(parents[0].data.params["sweep.overrides"]) == ["vocab.min_count=1,2", "hf_token=***"]


def test_a_job_without_the_callbacks_state_finds_the_parent_in_the_sweep_dir(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / PARENT_RUN_FILE).write_text("abc123\n")
    monkeypatch.chdir(tmp_path / "sweep")  # hydra.job.chdir=true: the job runs in its own folder
    worker = SweepParentRun()  # as a launcher that re-creates its callbacks would have it: no id of its own
    worker.on_job_start(sweep_config(tmp_path))
    assert os.environ[PARENT_RUN_ENV] == "abc123"
    worker.on_job_end(sweep_config(tmp_path), job_return=None)
    assert PARENT_RUN_ENV not in os.environ

    monkeypatch.setenv(PARENT_RUN_ENV, "abc123")  # a single run: neither the file nor the variable counts
    worker.on_job_start(sweep_config(tmp_path, RunMode.RUN))
    assert PARENT_RUN_ENV not in os.environ


def test_tracking_disabled_opens_no_parent_and_clears_a_stale_one(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / PARENT_RUN_FILE).write_text("stale\n")
    monkeypatch.setenv(PARENT_RUN_ENV, "stale")
    config, callback = sweep_config(tmp_path, enabled=False), SweepParentRun()
    callback.on_multirun_start(config)
    callback.on_job_start(config)
    assert PARENT_RUN_ENV not in os.environ
    callback.on_job_end(config, job_return=None)
    callback.on_multirun_end(config)
    assert os.environ[PARENT_RUN_ENV] == "stale"
    assert not (tmp_path / "sweep" / PARENT_RUN_FILE).exists() and not (tmp_path / "mlflow.db").exists()
