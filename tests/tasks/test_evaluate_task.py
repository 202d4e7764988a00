"""Evaluation in both tasks: sets scored before and after, neighbours, report.md, plots; tasks.evaluate on any table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from omegaconf import DictConfig
from planted import NEW, Planted, write_eval_sets

from pipeline.errors import InputError, IntegrityError
from pipeline.formats import LoadOptions, load_table, save_table
from pipeline.table import EmbeddingTable
from tasks.adapt import run as run_adapt
from tasks.evaluate import run as run_evaluate

QUIET = LoadOptions(cache=False, progress=False)


def _client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


def _runs(tmp_path: Path, task: str) -> list:
    client = _client(tmp_path)
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return [r for r in runs if r.data.tags.get("task") == task]


def _sets(tmp_path: Path) -> tuple[list[str], Path, Path, Path]:
    sets = write_eval_sets(tmp_path / "evalsets")
    return ([f"evaluate.similarity=[{sets.similarity}]", f"evaluate.pairs=[{sets.pairs}]",
             f"evaluate.analogies=[{sets.analogies}]"], sets.similarity, sets.pairs, sets.analogies)


@pytest.fixture
def adapted_run(compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str],
                tmp_path: Path) -> Path:
    """An adapt run (fine-tuned, with every evaluation set) under tmp_path/run."""
    overrides, *_ = _sets(tmp_path)
    run_adapt(compose_adapt([*planted_overrides, *overrides, "train.sample=0", "train.batch_size=16",
                             "train.log_every=1", "train.monitor=heldout_loss", "train.heldout=0.2",
                             "train.epochs=2"]), tmp_path / "run")
    return tmp_path / "run"


def test_adapt_scores_every_set_before_and_after_and_reports(adapted_run: Path, tmp_path: Path,
                                                             planted: Planted) -> None:
    metrics = json.loads((adapted_run / "metrics.json").read_text())
    # the planted table ranks same-cluster pairs above the rest, and frozen rows keep it exactly
    assert metrics["eval/similarity/simlex_like/rho_before"] > 0.5
    assert metrics["eval/similarity/simlex_like/rho_after"] == metrics["eval/similarity/simlex_like/rho_before"]
    assert metrics["eval/similarity/simlex_like/coverage_after"] == pytest.approx(8 / 9)  # 'missing' is not a word
    # pairs touching the new tokens are uncovered before (no rows) and covered after
    assert metrics["eval/pairs/related/coverage_before"] == pytest.approx(4 / 9)
    assert metrics["eval/pairs/related/coverage_after"] == pytest.approx(8 / 9)
    assert metrics["eval/pairs/related/touching_pairs_after"] == 4
    assert "eval/pairs/related/touching_auc_before" not in metrics  # undefined figures are left out
    assert metrics["eval/pairs/related/touching_auc_after"] >= 0.5
    assert metrics["eval/analogies/questions-words/coverage_after"] == 1.0
    assert "eval/analogies/questions-words/cluster-c/accuracy_after" in metrics

    neighbours = (adapted_run / "neighbours.tsv").read_text().splitlines()
    assert neighbours[0].split("\t") == ["token", "kind", "when", "rank", "neighbour", "cosine"]
    rows = [line.split("\t") for line in neighbours[1:]]
    for token in NEW:
        assert {r[2] for r in rows if r[0] == token} == {"before", "after"}
        assert all(r[1] == "new" for r in rows if r[0] == token)

    report = (adapted_run / "report.md").read_text()
    for heading in ("## What was loaded", "## What was chosen, and why", "## Before and after", "## Neighbours",
                    "## Plots", "## Warnings"):
        assert heading in report, heading
    assert "eval/pairs/related/touching_auc" in report and "zorblax" in report
    for name in ("loss.png", "pca.png", "norms.png"):
        assert (adapted_run / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"(plots/{name})" in report

    (mlrun,) = _runs(tmp_path, "adapt")
    client = _client(tmp_path)
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"report.md", "neighbours.tsv", "neighbours.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(mlrun.info.run_id, "plots")}
    assert plots == {"plots/loss.png", "plots/pca.png", "plots/norms.png"}
    assert mlrun.data.metrics["eval/pairs/related/coverage_after"] == pytest.approx(8 / 9)


def test_bad_evaluation_file_fails_before_any_work(compose_adapt: Callable[[list[str]], DictConfig],
                                                   planted_overrides: list[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(InputError, match="missing.tsv"):
        run_adapt(compose_adapt([*planted_overrides, f"evaluate.pairs=[{tmp_path / 'missing.tsv'}]"]), out)
    assert not (out / "vocab.tsv").exists()  # nothing was counted
    bad = tmp_path / "bad.tsv"
    bad.write_text("# header\nbolt\tbrace\t1.0\nbolt brace\n")
    with pytest.raises(InputError, match=rf"{bad}:3"):
        run_adapt(compose_adapt([*planted_overrides, f"evaluate.similarity=[{bad}]"]), out)
    assert not (out / "export").exists()


def test_same_file_name_twice_is_refused(compose_adapt: Callable[[list[str]], DictConfig],
                                         planted_overrides: list[str], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="two files named 'pairs'"):
        run_adapt(compose_adapt([*planted_overrides, "evaluate.pairs=[a/pairs.tsv,b/pairs.tsv]"]), tmp_path / "r")


def test_uncovered_set_reports_coverage_zero(compose_adapt: Callable[[list[str]], DictConfig],
                                             planted_overrides: list[str], tmp_path: Path) -> None:
    scored, pairs = tmp_path / "elsewhere.tsv", tmp_path / "pairs" / "elsewhere.tsv"
    scored.write_text("cat\tdog\t8\nsun\tmoon\t6\n")
    pairs.parent.mkdir()
    pairs.write_text("cat\tdog\nsun\tmoon\n")
    result = run_adapt(compose_adapt([*planted_overrides, f"evaluate.similarity=[{scored}]",
                                      f"evaluate.pairs=[{pairs}]", "train=none"]), tmp_path / "run")
    assert result.metrics["eval/similarity/elsewhere/coverage_after"] == 0.0
    assert result.metrics["eval/pairs/elsewhere/coverage_after"] == 0.0
    assert "eval/similarity/elsewhere/rho_after" not in result.metrics


def test_evaluate_finds_the_run_through_its_manifest(adapted_run: Path, compose_evaluate: Callable[
        [list[str]], DictConfig], planted_overrides: list[str], planted: Planted, tmp_path: Path) -> None:
    overrides, *_ = _sets(tmp_path)
    tracking = [o for o in planted_overrides if o.startswith(("tracking.", "progress"))]
    adapt_metrics = json.loads((adapted_run / "metrics.json").read_text())
    out = tmp_path / "evaluated"
    result = run_evaluate(compose_evaluate([f"embedding.path={adapted_run / 'export' / 'embedding.w2v.txt'}",
                                            *overrides, *tracking, "corpus=files",
                                            f"corpus.paths=[{planted.corpus_path}]"]), out)
    assert result.manifest == adapted_run / "manifest.json"
    m = result.metrics
    assert m["integrity/ok"] == 1.0 and m["integrity/frozen_max_abs_diff"] == 0.0
    # the same figures as the adapt run measured (the same seeded partners, the same rows)
    for key in ("eval/pairs/related/auc_after", "eval/pairs/related/touching_auc_after",
                "eval/similarity/simlex_like/rho_before", "eval/analogies/questions-words/accuracy_after"):
        assert m[key] == pytest.approx(adapt_metrics[key], abs=1e-6), key
    assert m["vocab/coverage_after"] == pytest.approx(adapt_metrics["vocab/coverage_after"])
    assert m["vocab/coverage_before"] == pytest.approx(adapt_metrics["vocab/coverage_before"])
    assert "## Before and after" in (out / "report.md").read_text()
    (mlrun,) = _runs(tmp_path, "evaluate")
    assert mlrun.info.status == "FINISHED" and mlrun.data.tags["base_checksum"] == planted.table.checksum
    assert {"report.md", "metrics.json", "neighbours.tsv"} <= {a.path for a in
                                                              _client(tmp_path).list_artifacts(mlrun.info.run_id)}


def test_evaluate_fails_a_table_whose_frozen_row_moved(adapted_run: Path, compose_evaluate: Callable[
        [list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path) -> None:
    tracking = [o for o in planted_overrides if o.startswith(("tracking.", "progress"))]
    table = load_table(adapted_run / "export" / "embedding.w2v.txt", QUIET)
    matrix = np.array(table.matrix)
    matrix[3, 0] = np.nextafter(matrix[3, 0], np.float32(np.inf))  # one ulp in one frozen row
    tampered = adapted_run / "export" / "tampered.w2v.txt"
    save_table(EmbeddingTable(table.tokens, matrix), tampered)
    with pytest.raises(IntegrityError, match="1 frozen rows changed"):
        run_evaluate(compose_evaluate([f"embedding.path={tampered}", *tracking]), tmp_path / "evaluated")
    (mlrun,) = _runs(tmp_path, "evaluate")
    assert mlrun.info.status == "FAILED"


def test_evaluate_refuses_a_base_of_another_dimension(planted: Planted, compose_evaluate: Callable[
        [list[str]], DictConfig], tmp_path: Path) -> None:
    other = tmp_path / "other.w2v.txt"
    save_table(EmbeddingTable(["apple", "bolt"], np.ones((2, 3), np.float32)), other)
    with pytest.raises(InputError, match=r"dimension 16, but its base .*other.w2v.txt has 3"):
        run_evaluate(compose_evaluate([f"embedding.path={planted.table_path}", f"base={other}",
                                       "tracking=disabled", "progress=false"]), tmp_path / "evaluated")


def test_evaluate_any_table_alone(planted: Planted, compose_evaluate: Callable[[list[str]], DictConfig],
                                  tmp_path: Path) -> None:
    overrides, *_ = _sets(tmp_path)
    result = run_evaluate(compose_evaluate([f"embedding.path={planted.table_path}", *overrides,
                                            "tracking=disabled", "progress=false"]), tmp_path / "evaluated")
    assert result.manifest is None
    assert not any(k.startswith("integrity/") or k.endswith("_before") for k in result.metrics)
    assert result.metrics["eval/similarity/simlex_like/rho_after"] > 0.5
    assert result.metrics["eval/pairs/related/coverage_after"] == pytest.approx(4 / 9)


def test_adapt_exports_the_projector_and_registers_a_model_serving_the_rows(
        compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.pyfunc
    import pandas as pd

    out = tmp_path / "run"
    result = run_adapt(compose_adapt([*planted_overrides, "export.projector=true", "export.projector_rows=10",
                                      "tracking.register_as=planted-emb", "tracking.oov=zeros"]), out)
    metadata = (out / "projector" / "metadata.tsv").read_text().splitlines()
    assert metadata[0] == "token\tkind" and len(metadata) == 1 + 10
    assert {line.split("\t")[0] for line in metadata if line.endswith("\tnew")} == set(NEW)
    assert (out / "projector" / "projector_config.pbtxt").is_file()

    assert result.registered == ("planted-emb", "1")
    assert "models:/planted-emb/1" in (out / "report.md").read_text()
    assert not (out / "model").exists()  # the registry keeps its own copy
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    model = mlflow.pyfunc.load_model("models:/planted-emb/1")
    vectors = model.predict(pd.DataFrame({"token": ["zorblax", "apple", "unheard-of"]}))
    table = result.adapted.table
    np.testing.assert_array_equal(vectors[:2], table.matrix[table.indices(["zorblax", "apple"])])
    np.testing.assert_array_equal(vectors[2], np.zeros(table.dim, np.float32))
    (mlrun,) = _runs(tmp_path, "adapt")
    assert "projector" in {a.path for a in _client(tmp_path).list_artifacts(mlrun.info.run_id)}


@pytest.mark.parametrize(("error", "code"), [
    (InputError("f.txt", "bad", line=3), 2),
    (IntegrityError("t.txt", "1 frozen rows changed"), 4),
])
def test_known_failures_exit_with_their_own_code_and_one_line(error: Exception, code: int,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from tasks.job import exit_codes

    with pytest.raises(SystemExit) as exited, exit_codes():
        raise error
    assert exited.value.code == code
    assert capsys.readouterr().err == f"error: {error}\n"
