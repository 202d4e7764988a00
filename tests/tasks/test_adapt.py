"""tasks.adapt in-process: outputs in the run directory, one MLflow run with params, tags, metrics, artifacts."""

from __future__ import annotations

import base64
import contextlib
import gc
import http.server
import json
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from omegaconf import DictConfig
from planted import CLUSTERS, NEW, Planted

from pipeline.errors import InputError
from pipeline.formats import LoadOptions, load_table
from tasks.adapt import run
from tasks.adapt_stages import adapt
from tasks.config import to_options
from tasks.tracking import REDACTED, NullTracker, check_reachable, flatten, is_secret_key, redact


def _runs(tmp_path: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("test")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_adapt_writes_outputs_and_one_mlflow_run(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], planted: Planted,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    result = run(compose_adapt([*planted_overrides, "export.formats=[word2vec_text,npy]"]), out)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["vocab/new_tokens"] == len(NEW) and metrics["integrity/frozen_max_abs_diff"] == 0.0
    assert metrics["adapt/rows_after"] == len(planted.table) + len(NEW)
    # the adapted vectors are in memory after the load and before the run's reports are done
    assert metrics["load/seconds"] < metrics["adapt/vectors_seconds"] < metrics["adapt/seconds"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base"]["checksum"] == planted.table.checksum
    assert {a["token"]: a["index"] for a in manifest["appended"]} == result.adapted.appended_indices
    assert sorted(result.adapted.appended_indices.values()) == list(range(len(planted.table), len(planted.table) + 2))
    assert len(manifest["corpus_fingerprint"]) == 64 and len(manifest["config_sha256"]) == 64
    assert manifest["package_version"]
    for name in ("embedding.w2v.txt", "embedding.npy", "embedding.vocab.txt"):
        assert (out / "export" / name).exists()
    exported = load_table(out / "export" / "embedding.w2v.txt", LoadOptions(cache=False, progress=False))
    np.testing.assert_array_equal(exported.matrix[: len(planted.table)], planted.table.matrix)
    assert exported.tokens[: len(planted.table)] == planted.table.tokens
    vocab_report = (out / "vocab.tsv").read_text().splitlines()
    header = ["token", "count", "reason", "score", "distance", "lift", "method", "contexts"]
    assert vocab_report[0].split("\t") == header
    assert [line.split("\t")[2] for line in vocab_report[1:3]] == ["new", "new"]
    assert len(vocab_report) == 3 + metrics["vocab/shifted_tokens"]
    assert metrics["vocab/frozen_rows"] == len(planted.table) - metrics["vocab/shifted_tokens"]
    assert 0 < metrics["vocab/coverage_before"] < metrics["vocab/coverage_after"] <= 1

    printed = capsys.readouterr().out
    assert f"rows: {len(planted.table)} -> {len(planted.table) + 2}" in printed and "zorblax" in printed

    (mlrun,) = _runs(tmp_path)
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params["embedding.path"] == str(planted.table_path)
    assert mlrun.data.params["induce.window"] == "3"
    assert mlrun.data.params["export.formats"] == '["word2vec_text", "npy"]'
    assert mlrun.data.tags["base_checksum"] == planted.table.checksum
    assert mlrun.data.tags["corpus_fingerprint"] == manifest["corpus_fingerprint"]
    assert mlrun.data.metrics["integrity/frozen_max_abs_diff"] == 0.0
    assert mlrun.data.metrics["vocab/new_tokens"] == 2
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"config.yaml", "manifest.json", "metrics.json", "vocab.tsv", "vocab.json", "neighbours.tsv",
            "export"} <= artifacts
    exported_artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id, "export")}
    assert "export/embedding.w2v.txt" in exported_artifacts
    table = json.loads(Path(client.download_artifacts(mlrun.info.run_id, "vocab.json", str(tmp_path))).read_text())
    assert table["columns"] == header  # the MLflow table holds the TSV's rows
    assert [[str(v) for v in row[:3]] for row in table["data"]] == [line.split("\t")[:3] for line in vocab_report[1:]]


def test_the_collector_leaves_older_objects_alone_during_a_run_and_gets_them_back(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path,
) -> None:
    frozen_while_logging: list[int] = []

    class Recording(NullTracker):
        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            frozen_while_logging.append(gc.get_freeze_count())

    assert gc.get_freeze_count() == 0
    adapt(to_options(compose_adapt([*planted_overrides, "train=none"])), tmp_path / "run", Recording())
    assert frozen_while_logging and min(frozen_while_logging) > 0
    assert gc.get_freeze_count() == 0


def test_failed_run_is_marked_failed_with_its_error_and_exports_nothing(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    bad = [*planted_overrides, f"corpus.paths=[{tmp_path}/nothing-*.txt]"]
    with pytest.raises(InputError, match="glob matches no file"):
        run(compose_adapt(bad), out)
    assert not (out / "export").exists() and not (out / "manifest.json").exists()
    (mlrun,) = _runs(tmp_path)
    assert mlrun.info.status == "FAILED"
    assert "glob matches no file" in mlrun.data.tags["error"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    log_file = client.download_artifacts(mlrun.info.run_id, "error.log", str(tmp_path))
    assert "InputError" in Path(log_file).read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the corpus has no tokens"),
        (b"... 123 !!!\n\n", "the corpus has no tokens"),
        (b"zyx wvu tsr\n" * 10, "no corpus token is in the table"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)) * 8, "looks like a binary file"),
        (bytes(range(1, 256)) * 40, r"looks like a binary file, or text in another encoding than UTF-8 \(5\d% "),
    ],
)
def test_corpus_that_cannot_be_adapted_fails_clearly(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path, content: bytes,
    message: str,
) -> None:
    (tmp_path / "odd.txt").write_bytes(content)
    with pytest.raises(InputError, match=rf"odd.txt: {message}"):
        run(compose_adapt([*planted_overrides, f"corpus.paths=[{tmp_path}/odd.txt]"]), tmp_path / "run")
    assert not (tmp_path / "run" / "export").exists()


def test_undecodable_bytes_and_a_casing_mismatch_are_reported(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], planted: Planted,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "bad.txt").write_bytes(planted.corpus_path.read_bytes() + b"caf\xc3 \xff\xfe zorblax\n")
    overrides = [*planted_overrides, f"corpus.paths=[{tmp_path}/bad.txt]", "corpus.tokenizer.lowercase=false",
                 "train=none"]
    with caplog.at_level(logging.WARNING):
        result = run(compose_adapt(overrides), tmp_path / "run")
    assert result.metrics["corpus/replaced_characters"] == 3
    assert "bad.txt: 3 characters are U+FFFD: undecodable bytes replaced" in caplog.text
    # an uncased table read by a tokenizer that keeps case: every row can still be produced (share 0)
    assert result.metrics["corpus/tokenizer_unproducible_share"] == 0.0
    assert "corpus.tokenizer.lowercase" in caplog.text
    (mlrun,) = _runs(tmp_path)
    assert mlrun.data.metrics["corpus/replaced_characters"] == 3


def test_stored_and_tfds_corpora_run_through_the_app(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path,
) -> None:
    """``corpus.store=true`` writes TFDS shards once; ``corpus=tfds`` reads them by name: the same table."""
    cache = tmp_path / "cache-dir"
    first = run(compose_adapt([*planted_overrides, "train=none", "corpus.store=true", f"corpus.cache_dir={cache}"]),
                tmp_path / "stored")
    assert sorted((cache / "tfds").rglob("*.tfrecord*"))
    name = f"embadapt_local_corpus/c{first.manifest['corpus_fingerprint'][:16]}"
    tfds = [o for o in planted_overrides if not o.startswith("corpus")] + [
        "train=none", "corpus=tfds", f"corpus.name={name}", f"corpus.data_dir={cache / 'tfds'}"]
    second = run(compose_adapt(tfds), tmp_path / "tfds")
    assert second.manifest["corpus"]["sources"] == [f"tfds:{name}:train"]
    assert second.adapted.table.tokens == first.adapted.table.tokens
    np.testing.assert_array_equal(second.adapted.table.matrix, first.adapted.table.matrix)
    with pytest.raises(InputError, match=r"tfds:embadapt_local_corpuss: no such TFDS dataset"):
        run(compose_adapt([*tfds, "corpus.name=embadapt_local_corpuss"]), tmp_path / "bad")
    with pytest.raises(InputError, match=r"no corpus stored under this name in .*empty.*set corpus.data_dir"):
        run(compose_adapt([*tfds, f"corpus.data_dir={tmp_path / 'empty'}"]), tmp_path / "elsewhere")
    with pytest.raises(InputError, match=r"tfds:ag_news_subset: not prepared in .*corpus.download=true"):
        run(compose_adapt([*tfds, "corpus.name=ag_news_subset", f"corpus.data_dir={tmp_path / 'empty'}"]),
            tmp_path / "unprepared")
    assert [r.info.status for r in _runs(tmp_path)].count("FAILED") == 3
    assert not any((tmp_path / name / "export").exists() for name in ("bad", "elsewhere", "unprepared"))


def test_nothing_to_adapt_is_a_clear_success(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "plain.txt").write_text("apple bolt cello the\n" * 3)
    result = run(compose_adapt([*planted_overrides, f"corpus.paths=[{tmp_path}/plain.txt]"]), tmp_path / "run")
    assert result.metrics["vocab/new_tokens"] == 0 and result.metrics["adapt/rows_after"] == 24
    assert capsys.readouterr().out.startswith("nothing to adapt:")


def test_tracking_disabled_writes_no_store(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path
) -> None:
    result = run(compose_adapt([*planted_overrides, "tracking=disabled"]), tmp_path / "run")
    assert result.metrics["vocab/new_tokens"] == 2
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_secrets_never_reach_params(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_supersecretvalue")
    run(compose_adapt([*planted_overrides, "tracking.run_name=${oc.env:HF_TOKEN}"]), tmp_path / "run")
    (mlrun,) = _runs(tmp_path)
    assert "hf_supersecretvalue" not in json.dumps(mlrun.data.params)
    assert mlrun.data.params["tracking.run_name"] == REDACTED
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    config_file = client.download_artifacts(mlrun.info.run_id, "config.yaml", str(tmp_path))
    assert "hf_supersecretvalue" not in Path(config_file).read_text()


def test_redaction_rules() -> None:
    for key in ("MLFLOW_TRACKING_TOKEN", "hf_token", "db.password", "AWS_SECRET_ACCESS_KEY", "openai_api_key",
                "API_TOKEN_V2", "token"):
        assert is_secret_key(key), key
    for key in ("embedding.token_filter", "corpus.tokenizer", "vocab.max_new", "TOKENIZERS_PARALLELISM",
                "vocab.shift_skip_common"):
        assert not is_secret_key(key), key
    tree = {"db": {"password": "pw", "uri": "http://me:pw123@host/x"}, "token_filter": "[a-z]+", "k": ["S3CRET!"]}
    assert redact(tree, secrets=["S3CRET!"]) == {
        "db": {"password": REDACTED, "uri": f"http://me:{REDACTED}@host/x"}, "token_filter": "[a-z]+",
        "k": [REDACTED],
    }
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]", "d": "None"}


def test_long_and_many_params_fit_mlflow_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.tracking import tracking_run

    monkeypatch.chdir(tmp_path)
    config = {f"group{i}": {"value": "x" * 7000 if i == 0 else i} for i in range(250)}
    with tracking_run(enabled=True, uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="test", run_name=None,
                      config=config, hydra_dir=None, tags={}):
        pass
    (mlrun,) = _runs(tmp_path)
    assert len(mlrun.data.params) == 250 and len(mlrun.data.params["group0.value"]) == 6000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_tracking_server_fails_fast_before_work(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path
) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(InputError, match=rf"tracking.uri: {uri} did not answer .*tracking=disabled"):
        run(compose_adapt([*planted_overrides, f"tracking.uri={uri}"]), tmp_path / "run")
    assert time.monotonic() - started < 10
    assert not (tmp_path / "run").exists()


def test_unreachable_server_times_out_within_connect_timeout() -> None:
    with socket.socket() as server:  # accepts connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(InputError, match="did not answer"):
            check_reachable(f"http://127.0.0.1:{port}", timeout=1.0)
        assert time.monotonic() - started < 5


def test_sqlite_store_in_missing_folder_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        check_reachable(f"sqlite:///{tmp_path}/no/such/dir/mlflow.db", timeout=1)


class _Stub(http.server.BaseHTTPRequestHandler):
    status = 503
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}')

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _stub_server(status: int) -> Iterator[int]:
    handler = type("Handler", (_Stub,), {"status": status, "seen": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
    _Stub.seen = handler.seen


def test_server_errors_count_as_not_answering() -> None:
    with _stub_server(503) as port, pytest.raises(InputError, match=r"did not answer \(HTTP 503"):
        check_reachable(f"http://127.0.0.1:{port}", timeout=2)


def test_credentials_in_the_uri_are_sent_not_refused() -> None:
    with _stub_server(404) as port:
        check_reachable(f"http://me:p%40ss@127.0.0.1:{port}", timeout=2)
    assert _Stub.seen == ["Basic " + base64.b64encode(b"me:p@ss").decode()]


def test_deleted_experiment_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.tracking import tracking_run

    monkeypatch.chdir(tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(InputError, match=r"tracking.experiment: experiment 'gone' is deleted \(restore it"), \
            tracking_run(enabled=True, uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="gone", run_name=None,
                         config={}, hydra_dir=None, tags={}):
        pass


def test_git_tags_only_for_the_checkout_the_code_is_in(tmp_path: Path) -> None:
    from tasks.tracking import git_tags

    assert git_tags(tmp_path) == {}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f.txt"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   check=True)
    tags = git_tags(tmp_path)
    assert len(tags["git_commit"]) == 40 and tags["git_dirty"] == "false"
    (tmp_path / "f.txt").write_text("changed")
    assert git_tags(tmp_path)["git_dirty"] == "true"
    (tmp_path / "inner").mkdir()
    assert git_tags(tmp_path / "inner") == {}  # an installed package inside another project's checkout


def test_each_induction_method_logs_its_self_test(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path
) -> None:
    for method in ("auto", "mean_context", "random"):
        run(compose_adapt([*planted_overrides, f"induce={method}", "induce.window=3", "induce.selftest_size=6",
                           f"tracking.run_name={method}"]), tmp_path / method)
    runs = {r.info.run_name: r.data.metrics for r in _runs(tmp_path)}
    assert set(runs) == {"auto", "mean_context", "random"}
    for metrics in runs.values():
        assert metrics["induce/selftest_size"] == 6
    cosine = {name: m["induce/selftest_mean_cosine"] for name, m in runs.items()}
    assert cosine["auto"] > cosine["random"] and cosine["mean_context"] > cosine["random"]


def test_blended_method_counts_reach_mlflow(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], planted: Planted, tmp_path: Path
) -> None:
    corpus = tmp_path / "more.txt"
    corpus.write_text(planted.corpus_path.read_text() + "apricots almond anise apple avocado\n" * 6)
    run(compose_adapt([*planted_overrides, f"corpus.paths=[{corpus}]"]), tmp_path / "run")
    (mlrun,) = _runs(tmp_path)
    # apricots shares n-grams with apricot, and inflects it
    assert mlrun.data.metrics["induce/method_alacarte_subword_morphology"] == 1
    assert mlrun.data.metrics["induce/method_alacarte"] == 2


def test_fine_tuning_logs_step_metrics_and_its_checkpoint(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    overrides = [*planted_overrides, "train.log_every=2", "train.checkpoint_every=4", "train.sample=0",
                 "train.batch_size=16", "train.heldout=0.2"]
    result = run(compose_adapt(overrides), tmp_path / "run")
    steps = int(result.metrics["train/steps"])
    assert steps >= 8 and result.metrics["train/trainable_rows"] >= len(NEW)
    assert result.metrics["integrity/frozen_max_abs_diff"] == 0.0
    (mlrun,) = _runs(tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    history = client.get_metric_history(mlrun.info.run_id, "train/loss")
    assert [m.step for m in history] == list(range(2, steps + 1, 2))
    assert all(m.value == 0.0 for m in client.get_metric_history(mlrun.info.run_id, "train/frozen_max_abs_diff"))
    for name in ("train/lr", "train/pairs_per_second", "train/heldout_loss"):
        assert client.get_metric_history(mlrun.info.run_id, name), name
    checkpoint = {a.path for a in client.list_artifacts(mlrun.info.run_id, "checkpoint")}
    assert {f"checkpoint/ckpt-{steps}.index", f"checkpoint/ckpt-{steps}.data-00000-of-00001"} <= checkpoint
    assert "fine-tuning:" in capsys.readouterr().out


@pytest.mark.parametrize("weight", ["1.0", "0.0"])
def test_a_shifted_row_is_moved_toward_its_domain_use_even_without_training(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], planted: Planted,
    tmp_path: Path, weight: str,
) -> None:
    rng = np.random.default_rng(5)
    lines = []
    for i in range(600):  # cello, a music word, used among hardware words (cluster b)
        words = list(rng.choice(CLUSTERS["abc"[i % 3]], size=8))
        lines.append(" ".join([*words[:3], "cello", *words[3:]] if i % 3 == 1 else [w for w in words if w != "cello"]))
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    result = run(compose_adapt([*planted_overrides, f"corpus.paths=[{tmp_path / 'c.txt'}]", "train=none",
                                "vocab.shift_top=1", "vocab.shift_skip_common=0", f"induce.shift_weight={weight}"]),
                 out)
    cello = planted.table.index_of("cello")
    assert result.metrics["vocab/shifted_tokens"] == 1 and result.adapted.trained_rows == (cello,)
    assert result.metrics["induce/shifted_moved"] == (1.0 if weight != "0.0" else 0.0)
    row = dict(line.split("\t")[::6] for line in (out / "vocab.tsv").read_text().splitlines()[1:])
    assert row == {"cello": "pretrained+alacarte" if weight != "0.0" else "pretrained"}
    exported = load_table(out / "export" / "embedding.w2v.txt", LoadOptions(cache=False, progress=False))
    assert np.array_equal(exported.matrix[cello], planted.table.matrix[cello]) == (weight == "0.0")
    others = np.arange(len(planted.table)) != cello
    assert np.array_equal(exported.matrix[: len(planted.table)][others].view(np.uint32),
                          planted.table.matrix[others].view(np.uint32))
    assert result.metrics["integrity/frozen_max_abs_diff"] == 0.0
    assert json.loads((out / "manifest.json").read_text())["trained_rows"] == [cello]


def test_nothing_to_train_is_skipped_with_a_message(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = run(compose_adapt([*planted_overrides, "vocab.min_count=100000", "vocab.shift_top=0"]), tmp_path / "run")
    assert result.metrics["train/trainable_rows"] == 0.0 and "train/steps" not in result.metrics
    assert "nothing to train" in caplog.text
    assert not (tmp_path / "run" / "train").exists()


def test_a_diverging_run_fails_with_its_step_and_keeps_its_last_good_checkpoint(
    compose_adapt: Callable[[list[str]], DictConfig], planted_overrides: list[str], tmp_path: Path,
) -> None:
    from pipeline.errors import TrainingDivergedError

    out = tmp_path / "run"
    overrides = [*planted_overrides, "train.optimizer=sgd", "train.lr=1e36", "train.checkpoint_every=1",
                 "train.heldout=0", "train.sample=0", "train.batch_size=16", "train.anchor_mu=0"]
    with pytest.raises(TrainingDivergedError, match=r"training diverged at step \d+") as err:
        run(compose_adapt(overrides), out)
    assert not (out / "export").exists() and not (out / "manifest.json").exists()
    assert err.value.checkpoint and Path(err.value.checkpoint + ".index").exists()
    (mlrun,) = _runs(tmp_path)
    assert mlrun.info.status == "FAILED"
    assert mlrun.data.metrics["train/diverged_step"] == err.value.step
    assert f"training diverged at step {err.value.step}" in mlrun.data.tags["error"]


def test_a_run_whose_error_log_cannot_be_stored_is_still_marked_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.tracking import MlflowTracker, tracking_run

    monkeypatch.chdir(tmp_path)

    def refuse(self: MlflowTracker, path: Path, artifact_path: str | None = None) -> None:
        if Path(path).name == "error.log":
            raise OSError("artifact store unreachable")

    monkeypatch.setattr(MlflowTracker, "log_artifact", refuse)
    with pytest.raises(RuntimeError, match="stage broke"), tracking_run(
            enabled=True, uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="test", run_name=None, config={},
            hydra_dir=None, tags={"task": "adapt"}):
        raise RuntimeError("stage broke")
    (mlrun,) = _runs(tmp_path)
    assert mlrun.info.status == "FAILED"
