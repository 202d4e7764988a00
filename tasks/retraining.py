"""One scheduled round: new shards since the watermark, from the champion, adapt, gate, promote or reject.

The state lives in MLflow, so any machine can run the next round: the watermark (the content
fingerprints of every shard a completed round learned) is an artifact of the last completed
retrain run; the champion is the registered model's ``champion`` alias; each candidate is a model
version tagged with its round. A round is named by the shards it reads, so a round that was
killed and is started again finds its own working folder (and resumes fine-tuning from its
checkpoint) or its own registered version (and only gates it).

The shards are the files of a folder, or the (version, split) pairs of a TFDS dataset prepared in a
data dir (``schedule.source=tfds:<name>``), read one after the other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.corpus.base import Corpus, concatenated
from pipeline.errors import InputError
from pipeline.formats import LoadOptions, file_sha256
from pipeline.gates import Verdict, judge
from tasks.config import FilesCorpusConfig, RetrainOptions, TfdsCorpusConfig
from tasks.job import tracked
from tasks.lock import exclusive
from tasks.tracking import NullTracker

log = logging.getLogger(__name__)

CHAMPION = "champion"
WATERMARK = "watermark.json"
ROUND_TAG = "retrain_round"
STATUS_TAG = "retrain_status"
MODEL_TAG = "retrain_model"
TFDS = "tfds:"


@dataclass(frozen=True)
class Shard:
    """A corpus shard: where it is and the sha256 of its content.

    Attributes:
        path: the shard's file, or (a TFDS split) the folder of the dataset version that holds it.
        fingerprint: the sha256 of the file's bytes, or of the split's record files' bytes.
        split: the TFDS split (None for a file).
        part: the TFDS split as a corpus (None for a file).
    """

    path: Path
    fingerprint: str
    split: str | None = None
    part: Corpus | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        """Its name in the watermark and the results: the file's name, or ``<version>/<split>``."""
        return self.path.name if self.split is None else f"{self.path.name}/{self.split}"


@dataclass(frozen=True)
class RoundResult:
    """How a round ended.

    Attributes:
        status: ``promoted``, ``rejected`` or ``noop``.
        version: the candidate's registered version (None for a no-op).
        reason: why a candidate was rejected ('' otherwise).
        new_shards: shards this round learned.
        replayed: older shards it read again.
        round_id: the round's name (None for a no-op).
    """

    status: str
    version: str | None = None
    reason: str = ""
    new_shards: tuple[str, ...] = ()
    replayed: tuple[str, ...] = ()
    round_id: str | None = None


def list_shards(source: str, pattern: str, data_dir: str | None = None, field: str = "text") -> list[Shard]:
    """The shards of ``source`` with their content fingerprints.

    A folder's shards are its files matching ``pattern``, in name order; a ``tfds:<name>`` source's are
    the splits of the versions of that dataset prepared under ``data_dir`` (see :func:`tfds_shards`).

    Raises:
        InputError: ``source`` is not a folder, or names a TFDS dataset that is not prepared there.
    """
    if source.startswith(TFDS):
        return tfds_shards(source.removeprefix(TFDS), data_dir, field)
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise InputError(source, "not a folder of corpus shards", hint="set schedule.source to the folder that "
                                                                       "receives new shards")
    return [Shard(p, file_sha256(p)) for p in sorted(folder.glob(pattern)) if p.is_file()]


def tfds_shards(name: str, data_dir: str | None, field: str = "text") -> list[Shard]:
    """The (version, split) pairs of TFDS dataset ``name`` prepared under ``<data_dir>/<name>/<version>/``.

    Each is read as its ``field`` and fingerprinted by its record files' bytes, so a split that a later
    version carries unchanged is the same shard: it is listed once, under the latest version. Versions
    come oldest first, the splits of each in name order.

    Args:
        name: the dataset as TFDS names it, with its config if any, without a version (``news/en``).
        data_dir: the TFDS data dir (TFDS's default when None).
        field: the text feature read as the document.

    Raises:
        InputError: no version of ``name`` is prepared under ``data_dir``, or one lacks ``field``.
    """
    import tensorflow_datasets as tfds

    from pipeline.corpus.python_docs import prepared_corpus

    source = f"{TFDS}{name}"
    if not name or ":" in name:
        raise InputError(source, "not a TFDS dataset name", hint="set schedule.source=tfds:<name>[/<config>], "
                                                                  "without a version: every prepared version is read")
    root = Path(data_dir or tfds.core.constants.get_default_data_dir()).expanduser()
    folder = root / name
    versions = sorted((d for d in folder.iterdir() if tfds.core.Version.is_valid(d.name)
                       and (d / "dataset_info.json").is_file()), key=lambda d: tfds.core.Version(d.name)) \
        if folder.is_dir() else []
    if not versions:
        raise InputError(source, f"no prepared version in data_dir {root} (no {folder}/<version>/dataset_info.json)",
                         hint="prepare it there, or set schedule.data_dir to the TFDS data dir that holds it")
    shards: dict[str, Shard] = {}
    for directory in versions:
        builder = tfds.builder_from_directory(str(directory))
        if field not in builder.info.features:
            texts = sorted(k for k, v in builder.info.features.items() if isinstance(v, tfds.features.Text))
            raise InputError(f"{source}:{directory.name}", f"no field {field!r}",
                             hint=f"set schedule.field to one of {', '.join(texts) or '(none)'}")
        for split in sorted(builder.info.splits.keys()):
            part = prepared_corpus("tfds", builder, split, field, (f"{source}:{directory.name}/{split}",))
            shards.pop(part.fingerprint, None)  # the same content again: listed under its latest version
            shards[part.fingerprint] = Shard(directory, part.fingerprint, split, part)
    return list(shards.values())


def pick_round(shards: list[Shard], seen: dict[str, str], replay: float) -> tuple[list[Shard], list[Shard], str]:
    """The new shards, the older shards replayed with them, and the round's name.

    The replayed share is drawn with a seed taken from the new shards' fingerprints, so a round
    started again reads the same shards and has the same name. Both keep the order of ``shards``.
    """
    new = [s for s in shards if s.fingerprint not in seen]
    older = [s for s in shards if s.fingerprint in seen]
    key = hashlib.sha256("".join(sorted(s.fingerprint for s in new)).encode()).hexdigest()
    count = round(replay * len(older))
    replayed = [older[i] for i in sorted(random.Random(key).sample(range(len(older)), count))] if count else []
    round_id = hashlib.sha256((key + "".join(sorted(s.fingerprint for s in replayed))).encode()).hexdigest()[:16]
    return new, replayed, round_id


def champion_version(client: Any, name: str) -> Any | None:
    """The version the ``champion`` alias points to, None before the first promotion."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def last_watermark(client: Any, experiment_id: str | None, name: str) -> dict[str, str]:
    """Fingerprint -> shard name of every shard a completed round of ``name`` learned."""
    if experiment_id is None:
        return {}
    runs = [run for status in ("promoted", "rejected")  # tags take no IN: one search per status
            for run in client.search_runs(
                [experiment_id], filter_string=f"tags.{MODEL_TAG} = '{name}' and tags.{STATUS_TAG} = '{status}'",
                order_by=["attributes.start_time DESC"], max_results=1)]
    if not runs:
        return {}
    runs.sort(key=lambda run: run.info.start_time, reverse=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(runs[0].info.run_id, WATERMARK, tmp)
        shards = json.loads(Path(path).read_text(encoding="utf-8"))["shards"]
    return {str(k): str(v) for k, v in shards.items()}


def download_champion(uri: str, version: Any, directory: Path) -> Path:
    """The champion's table file, downloaded from its model's artifacts into ``directory``."""
    import mlflow.artifacts

    from pipeline.serving import TABLE_ARTIFACT, TABLE_FILE

    directory.mkdir(parents=True, exist_ok=True)
    got = mlflow.artifacts.download_artifacts(artifact_uri=f"{version.source.rstrip('/')}/artifacts/{TABLE_ARTIFACT}",
                                              dst_path=str(directory), tracking_uri=uri)
    table = Path(got) / TABLE_FILE
    if not table.is_file():
        raise RuntimeError(f"models:/{version.name}/{version.version} ({CHAMPION}) has no {TABLE_FILE} in its "
                           f"artifacts ({version.source}): the registry is missing the champion's files")
    return table


def retrain(options: RetrainOptions, config: dict[str, Any], hydra_dir: Path | None) -> RoundResult:
    """Run one round under the lock (see the module docstring).

    Raises:
        LockedError: another round holds the lock; nothing was done.
        InputError: bad input (config, shards, evaluation files).
    """
    schedule = options.schedule
    name = options.name
    work = Path(schedule.work_dir).expanduser() / name
    lock = Path(schedule.lock).expanduser() if schedule.lock else work.parent / f"{name}.lock"
    with exclusive(lock, what=f"retrain {name}"):
        return _round(options, config, hydra_dir, work)


def _round(options: RetrainOptions, config: dict[str, Any], hydra_dir: Path | None, work: Path) -> RoundResult:
    from mlflow import MlflowClient

    from tasks.adapt_stages import adapt, config_sha256
    from tasks.registry import find_version

    tracking = options.adapt.tracking
    name = options.name
    client = MlflowClient(tracking_uri=tracking.uri, registry_uri=tracking.uri)
    schedule = options.schedule
    shards = list_shards(schedule.source, schedule.pattern, schedule.data_dir, schedule.field)
    experiment = client.get_experiment_by_name(tracking.experiment)
    seen = last_watermark(client, experiment.experiment_id if experiment else None, name)
    new, replayed, round_id = pick_round(shards, seen, options.schedule.replay)
    if not new:
        with tracked("retrain", tracking, config, hydra_dir, {MODEL_TAG: name, STATUS_TAG: "noop"}) as tracker:
            tracker.log_metrics({"retrain/new_shards": 0.0, "retrain/shards": float(len(shards))})
        log.info("retrain %s: nothing new in %s (%d shards, all learned)", name, options.schedule.source, len(shards))
        return RoundResult("noop")

    round_dir = work / round_id
    tags = {MODEL_TAG: name, ROUND_TAG: round_id}
    with tracked("retrain", tracking, config, hydra_dir, tags) as tracker:
        _end_killed_attempts(client, tracker, round_id)
        tracker.log_metrics({"retrain/new_shards": float(len(new)), "retrain/replayed_shards": float(len(replayed)),
                             "retrain/shards": float(len(shards))})
        version = find_version(uri=tracking.uri, name=name, tag=ROUND_TAG, value=round_id)
        if version is None:
            champion = champion_version(client, name)
            adapt_options, corpus = _round_options(options, new + replayed, champion, round_dir)
            tracker.set_tags({"retrain_base": f"models:/{name}/{champion.version}" if champion
                              else adapt_options.embedding_path})
            result = adapt(adapt_options, round_dir, tracker, config_sha256(config),
                           version_tags={ROUND_TAG: round_id}, corpus=corpus)
            assert result.registered is not None
            version = result.registered[1]
            metrics = result.metrics
        else:  # an earlier attempt of this round registered its candidate, then stopped: only gate it
            log.info("retrain %s: round %s already registered version %s; gating it", name, round_id, version)
            source_run = client.get_model_version(name, version).run_id
            if not source_run:
                raise RuntimeError(f"models:/{name}/{version} (round {round_id}) names no run; cannot gate it")
            metrics = dict(client.get_run(source_run).data.metrics)
        verdict = judge(options.gates, metrics, integrity_ok=metrics.get("integrity/ok") == 1.0)
        status = _promote_or_reject(client, name, version, verdict)
        tracker.log_metrics({"retrain/promoted": float(verdict.passed)})
        watermark = {**seen, **{s.fingerprint: s.name for s in new}}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, WATERMARK)
            path.write_text(json.dumps({"shards": watermark}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            tracker.log_artifact(path)
        tracker.set_tags({STATUS_TAG: status, "retrain_version": version})  # last: marks the round complete
    return RoundResult(status, version, verdict.reason, tuple(s.name for s in new),
                       tuple(s.name for s in replayed), round_id)


def _round_options(options: RetrainOptions, shards: list[Shard], champion: Any | None,
                   round_dir: Path) -> tuple[Any, Corpus | None]:
    """Adapt's options for this round, and the corpus it reads when that is not files of a folder.

    The corpus is the round's shards: ``corpus.paths`` set to its files, or its TFDS splits read one after
    the other. The base is the champion's table (the configured base table the first time).
    """
    adapt = options.adapt
    parts = [s.part for s in shards if s.part is not None]
    corpus: Corpus | None = None
    spec: FilesCorpusConfig | TfdsCorpusConfig
    if parts:
        corpus = concatenated(parts, "tfds")
        schedule = options.schedule
        spec = TfdsCorpusConfig(name=schedule.source.removeprefix(TFDS), split="+".join(s.name for s in shards),
                                field=schedule.field, data_dir=schedule.data_dir, tokenizer=adapt.corpus.tokenizer,
                                cache_dir=adapt.corpus.cache_dir)  # for the record: adapt reads the corpus given
    else:
        paths = [str(s.path) for s in shards]
        spec = dataclasses.replace(adapt.corpus, paths=paths) if isinstance(adapt.corpus, FilesCorpusConfig) \
            else FilesCorpusConfig(paths=paths)
    if champion is None:
        return dataclasses.replace(adapt, corpus=spec), corpus
    table = download_champion(adapt.tracking.uri, champion, round_dir / "champion")
    load = LoadOptions(format="safetensors", dim=adapt.load.dim, cache=False, progress=adapt.progress)
    return dataclasses.replace(adapt, corpus=spec, embedding_path=str(table), load=load), corpus


def _promote_or_reject(client: Any, name: str, version: str, verdict: Verdict) -> str:
    """Move the alias to ``version`` when the gates pass; otherwise tag it rejected with the reason."""
    for metric, champion, candidate in verdict.checked:
        log.info("gate %s: champion %s, candidate %s", metric, champion, candidate)
    if verdict.passed:
        client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, STATUS_TAG, "promoted")
        return "promoted"
    client.set_model_version_tag(name, version, "rejected", verdict.reason[:5000])
    client.set_model_version_tag(name, version, STATUS_TAG, "rejected")
    return "rejected"


def _end_killed_attempts(client: Any, tracker: NullTracker, round_id: str) -> None:
    """Mark earlier runs of this round that never ended (a killed process) as KILLED."""
    run_id = tracker.run_id
    if run_id is None:
        return
    run = client.get_run(run_id)
    for old in client.search_runs([run.info.experiment_id], filter_string=f"tags.{ROUND_TAG} = '{round_id}' and "
                                  "attributes.status = 'RUNNING'"):
        if old.info.run_id != run_id:
            client.set_terminated(old.info.run_id, status="KILLED")
            log.warning("retrain: run %s of round %s never ended (killed?); marked KILLED and resumed",
                        old.info.run_id, round_id)
