"""Fixtures for the tasks: composing the real conf.yaml, planted data, a temporary MLflow store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from planted import Planted, write_planted

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


@pytest.fixture
def planted(tmp_path: Path) -> Planted:
    return write_planted(tmp_path / "data")


def composer(config_name: str, job_name: str) -> Callable[[list[str]], DictConfig]:
    """Compose a primary config of configs/ (as the installed app finds it) with overrides."""

    def _compose(overrides: list[str]) -> DictConfig:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS), job_name=job_name):
            return compose(config_name=config_name, overrides=overrides)

    return _compose


@pytest.fixture
def compose_adapt() -> Callable[[list[str]], DictConfig]:
    """Compose conf.yaml, tasks.adapt's primary config."""
    return composer("conf", "adapt")


@pytest.fixture
def planted_overrides(planted: Planted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Overrides that run adapt on the planted data, MLflow in a sqlite file under tmp_path."""
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the working directory
    monkeypatch.setenv("EMBADAPT_CACHE", str(tmp_path / "cache"))
    return [
        "embedding=file",
        f"embedding.path={planted.table_path}",
        "corpus=files",
        f"corpus.paths=[{planted.corpus_path}]",
        "induce.window=3",
        "progress=false",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "tracking.experiment=test",
    ]


@pytest.fixture
def compose_evaluate() -> Callable[[list[str]], DictConfig]:
    """Compose tasks.evaluate's primary config."""
    return composer("evaluate_task", "evaluate")


@pytest.fixture
def compose_retrain() -> Callable[[list[str]], DictConfig]:
    """Compose tasks.retrain's primary config."""
    return composer("retrain_task", "retrain")
