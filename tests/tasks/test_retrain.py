"""tasks.retrain: watermark, champion, gates, promotion, the lock, and rounds killed and run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from omegaconf import DictConfig
from planted import CLUSTERS, FILLER, NEW, Planted, planted_corpus

from pipeline.formats import LoadOptions, load_table
from tasks.lock import LockedError, exclusive
from tasks.retrain import run

NAME = "planted-emb"
GATE = "eval/pairs/related/auc"


def _shard(directory: Path, name: str, docs: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("\n".join(docs) + "\n", encoding="utf-8")
    return path


def _misleading_docs(lines: int = 200, seed: int = 3) -> list[str]:
    """'blorp' only ever among cluster-c words, while the related pairs say it belongs with cluster a."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(lines):
        words = [*rng.choice(CLUSTERS["c"], size=8), *rng.choice(FILLER, size=2), "blorp"]
        rng.shuffle(words)
        docs.append(" ".join(words))
    return docs


@dataclass(frozen=True)
class Setting:
    """Overrides that retrain the planted table from a folder of shards, and where things are."""

    overrides: list[str]
    shards: Path
    uri: str

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


@pytest.fixture
def setting(planted: Planted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setting:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMBADAPT_CACHE", str(tmp_path / "cache"))
    a, b, c = CLUSTERS["a"], CLUSTERS["b"], CLUSTERS["c"]
    pairs = [("zorblax", a[0]), ("zorblax", a[1]), ("quuxify", b[0]), ("quuxify", b[1]), (a[2], a[3]), (b[2], b[3]),
             (c[0], c[1]), (c[2], c[3]), *[("blorp", w) for w in a]]
    related = tmp_path / "eval" / "related.tsv"
    related.parent.mkdir()
    related.write_text("".join(f"{x}\t{y}\n" for x, y in pairs), encoding="utf-8")
    shards = tmp_path / "shards"
    overrides = [
        "embedding=file", f"embedding.path={planted.table_path}", f"schedule.source={shards}",
        f"evaluate.pairs=[{related}]", "evaluate.negatives=50", f"schedule.gates=[{{metric: {GATE}, max_drop: 0.05}}]",
        "induce.window=3", "train.epochs=1", "train.batch_size=16", "train.sample=0", "progress=false",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "tracking.experiment=test", f"tracking.register_as={NAME}",
        f"schedule.work_dir={tmp_path / 'rounds'}",
    ]
    return Setting(overrides, shards, f"sqlite:///{tmp_path}/mlflow.db")


def test_three_rounds_promote_reject_and_do_nothing(
        setting: Setting, compose_retrain: Callable[[list[str]], DictConfig], planted: Planted) -> None:
    overrides, shards = setting.overrides, setting.shards
    client = setting.client()
    _shard(shards, "2026-11-01.txt", planted_corpus())

    first = run(compose_retrain(overrides))
    assert first.status == "promoted" and first.version == "1" and first.new_shards == ("2026-11-01.txt",)
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == "1"

    _shard(shards, "2026-11-02.txt", _misleading_docs())
    second = run(compose_retrain(overrides))
    assert second.status == "rejected" and second.version == "2"
    assert GATE in second.reason and "worse than the champion's" in second.reason
    assert second.new_shards == ("2026-11-02.txt",)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"  # the champion stays
    rejected = client.get_model_version(NAME, "2")
    assert GATE in rejected.tags["rejected"] and rejected.tags["retrain_status"] == "rejected"
    # round 2 started from the champion: round 1's tokens are table rows at their round-1 indices
    manifest_v1 = json.loads(Path(_download(client, NAME, "1", "manifest.json")).read_text())
    manifest_v2 = json.loads(Path(_download(client, NAME, "2", "manifest.json")).read_text())
    first_rows = {a["token"]: a["index"] for a in manifest_v1["appended"]}
    assert set(first_rows) == set(NEW) and manifest_v2["base"]["rows"] == len(planted.table) + len(NEW)
    assert [a["token"] for a in manifest_v2["appended"]] == ["blorp"]
    assert manifest_v2["appended"][0]["index"] == len(planted.table) + len(NEW)

    started = time.perf_counter()
    third = run(compose_retrain(overrides))
    assert third.status == "noop" and third.version is None
    assert time.perf_counter() - started < 30
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags.get("retrain_status") for r in runs] == ["promoted", "rejected", "noop"]
    assert runs[2].data.metrics == {"retrain/new_shards": 0.0, "retrain/shards": 2.0}
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 2


def _prepare_tfds(data_dir: Path, version: str, splits: dict[str, list[str]]) -> None:
    """Prepare version ``version`` of the TFDS dataset ``planted_news`` under ``data_dir``, offline."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tfds.dataset_builders.store_as_tfds_dataset(
        name="planted_news", version=version, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
        split_datasets={split: tf.data.Dataset.from_tensor_slices({"text": docs}) for split, docs in splits.items()},
        data_dir=str(data_dir), disable_shuffling=True)


def _tfds_overrides(setting: Setting, source: str, data_dir: Path | None) -> list[str]:
    kept = [o for o in setting.overrides if not o.startswith("schedule.source=")]
    return [*kept, f"schedule.source={source}", *([f"schedule.data_dir={data_dir}"] if data_dir else [])]


def test_a_tfds_dataset_gaining_a_version_is_learned_split_by_split(
        setting: Setting, compose_retrain: Callable[[list[str]], DictConfig], tmp_path: Path) -> None:
    data_dir = tmp_path / "tfds"
    overrides = _tfds_overrides(setting, "tfds:planted_news", data_dir)
    client = setting.client()
    _prepare_tfds(data_dir, "1.0.0", {"day1": planted_corpus()})

    first = run(compose_retrain(overrides))
    assert first.status == "promoted" and first.version == "1" and first.new_shards == ("1.0.0/day1",)

    _prepare_tfds(data_dir, "1.1.0", {"day1": planted_corpus(), "day2": _misleading_docs()})
    second = run(compose_retrain(overrides))
    assert second.new_shards == ("1.1.0/day2",) and second.replayed == ()  # day1 is unchanged: learned
    assert second.status == "rejected" and second.version == "2"
    manifest = json.loads(Path(_download(client, NAME, "2", "manifest.json")).read_text())
    assert manifest["corpus"] == {"source": "tfds", "sources": ["tfds:planted_news:1.1.0/day2"]}
    assert [a["token"] for a in manifest["appended"]] == ["blorp"]  # read day2 only, from the champion

    third = run(compose_retrain(overrides))
    assert third.status == "noop" and third.version is None
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags.get("retrain_status") for r in runs] == ["promoted", "rejected", "noop"]
    assert runs[2].data.metrics == {"retrain/new_shards": 0.0, "retrain/shards": 2.0}
    watermark = json.loads(Path(client.download_artifacts(runs[1].info.run_id, "watermark.json",
                                                          str(tmp_path))).read_text())["shards"]
    assert sorted(watermark.values()) == ["1.0.0/day1", "1.1.0/day2"]


def test_a_tfds_source_with_no_prepared_version_is_named(
        setting: Setting, compose_retrain: Callable[[list[str]], DictConfig], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import InputError

    data_dir = tmp_path / "tfds"
    _prepare_tfds(data_dir, "1.0.0", {"day1": ["alpha beta"]})
    with pytest.raises(InputError, match=f"tfds:nothing_here: no prepared version in data_dir {data_dir} "):
        run(compose_retrain(_tfds_overrides(setting, "tfds:nothing_here", data_dir)))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "default"))  # schedule.data_dir=null: TFDS's default
    with pytest.raises(InputError, match=f"tfds:planted_news: no prepared version in data_dir {tmp_path / 'default'} "):
        run(compose_retrain(_tfds_overrides(setting, "tfds:planted_news", None)))
    with pytest.raises(InputError, match="tfds:planted_news:1.0.0: no field 'body'.*one of text"):
        run(compose_retrain([*_tfds_overrides(setting, "tfds:planted_news", data_dir), "schedule.field=body"]))
    assert not setting.client().search_registered_models()


def _download(client: MlflowClient, name: str, version: str, artifact: str) -> str:
    import mlflow.artifacts

    source = client.get_model_version(name, version).source
    return mlflow.artifacts.download_artifacts(artifact_uri=f"{source}/artifacts/{artifact}",
                                               tracking_uri=client._tracking_client.tracking_uri)  # noqa: SLF001


def test_a_round_stopped_after_registering_only_gates_when_run_again(
        setting: Setting, compose_retrain: Callable[[list[str]], DictConfig], planted: Planted,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.retraining

    overrides, shards = setting.overrides, setting.shards
    _shard(shards, "a.txt", planted_corpus())
    real = tasks.retraining._promote_or_reject

    def crash(*args: object) -> str:
        raise KeyboardInterrupt("killed between registering and promoting")

    monkeypatch.setattr(tasks.retraining, "_promote_or_reject", crash)
    with pytest.raises(KeyboardInterrupt):
        run(compose_retrain(overrides))
    client = setting.client()
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1
    monkeypatch.setattr(tasks.retraining, "_promote_or_reject", real)
    again = run(compose_retrain(overrides))
    assert again.status == "promoted" and again.version == "1"
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"


def test_a_second_retrain_is_refused_at_once(
        setting: Setting, compose_retrain: Callable[[list[str]], DictConfig], planted: Planted,
        tmp_path: Path) -> None:
    overrides = setting.overrides
    _shard(setting.shards, "a.txt", planted_corpus())
    with exclusive(tmp_path / "rounds" / f"{NAME}.lock", what="the test"):
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            run(compose_retrain(overrides))
        done = subprocess.run([sys.executable, "-m", "tasks.retrain", *overrides, "hydra.run.dir=out"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 6, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: {tmp_path / 'rounds' / f'{NAME}.lock'}: another retrain holds the lock (pid {os.getpid()} on "
        + done.stderr.split(f"(pid {os.getpid()} on ")[1].splitlines()[0]]
    assert not setting.client().search_registered_models()


def test_a_stale_lock_is_taken_over(setting: Setting, compose_retrain: Callable[[list[str]], DictConfig],
                                    planted: Planted, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time, sys; from pathlib import Path; "
                               "from tasks.lock import exclusive\n"
                               "with exclusive(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
                               str(tmp_path / "rounds" / f"{NAME}.lock")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    _shard(setting.shards, "a.txt", planted_corpus())
    result = run(compose_retrain(setting.overrides))
    assert result.status == "promoted"
    assert f"took over a lock left by pid {holder.pid}" in caplog.text and "no longer running" in caplog.text


def test_retrain_needs_a_model_name(compose_retrain: Callable[[list[str]], DictConfig], setting: Setting) -> None:
    from pipeline.errors import InputError

    overrides = [o for o in setting.overrides if not o.startswith("tracking.register_as")]
    with pytest.raises(InputError, match="tracking.register_as must name the registered model"):
        run(compose_retrain(overrides))


@pytest.mark.slow
def test_a_retrain_killed_mid_training_completes_its_round_with_one_champion(
        setting: Setting, planted: Planted, tmp_path: Path) -> None:
    overrides = [o for o in setting.overrides if not o.startswith("train.epochs")]
    overrides += ["train.epochs=400", "train.checkpoint_every=5", "train.patience=1000", "train.monitor=heldout_loss"]
    _shard(setting.shards, "a.txt", planted_corpus())
    command = [sys.executable, "-m", "tasks.retrain", *overrides, "hydra.run.dir=out"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "rounds" / NAME).glob("*/train/checkpoints/checkpoint")):
        assert process.poll() is None, process.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    client = setting.client()
    assert not client.search_model_versions(f"name = '{NAME}'")
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    logged = (tmp_path / "out" / "retrain.log").read_text()  # Hydra's job log: INFO and up
    assert "resuming from" in logged and "took over a lock left by pid" in logged
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert len(versions) == 1 and str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    experiment = client.get_experiment_by_name("test")
    statuses = sorted(r.info.status for r in client.search_runs([experiment.experiment_id]))
    assert statuses == ["FINISHED", "KILLED"]
    table = load_table(_download(client, NAME, "1", "table/embedding.safetensors"),
                       LoadOptions(format="safetensors", cache=False, progress=False))
    np.testing.assert_array_equal(table.matrix[: len(planted.table)], planted.table.matrix)


def test_a_job_that_raised_released_its_lock(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lock = tmp_path / "x.lock"
    with pytest.raises(RuntimeError), exclusive(lock):
        raise RuntimeError("failed round")
    with exclusive(lock) as left:
        assert left["pid"] == os.getpid() and left["released"]
    assert "took over" not in caplog.text


def test_a_source_that_is_not_a_folder_fails_naming_it_and_records_nothing(
        compose_retrain: Callable[[list[str]], DictConfig], setting: Setting, tmp_path: Path) -> None:
    from pipeline.errors import InputError

    missing = tmp_path / "no-such-shards"
    overrides = [o for o in setting.overrides if not o.startswith("schedule.source")] + [f"schedule.source={missing}"]
    with pytest.raises(InputError, match=f"{missing}: not a folder of corpus shards"):
        run(compose_retrain(overrides))
    assert not setting.client().search_registered_models()
    assert not (tmp_path / "rounds" / NAME).exists()
