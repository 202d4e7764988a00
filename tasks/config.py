"""Config schemas of every group, registered with Hydra's ConfigStore, and their conversion to stage options.

The schema of a group is derived from the options dataclass of the stage it configures, so a key
exists in YAML exactly when the stage accepts it; values are then validated by constructing those
options (their ``__post_init__``), naming the key and the value.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, MissingMandatoryValue, OmegaConf

from pipeline.errors import InputError
from pipeline.evaluate.suite import EvaluateOptions
from pipeline.export import check_formats
from pipeline.formats import LoadOptions
from pipeline.gates import Gate
from pipeline.induce import InduceOptions
from pipeline.tokenize import TokenizerOptions
from pipeline.train.options import TrainOptions
from pipeline.vocab import VocabOptions

DEVICES = ("auto", "cpu", "gpu")
T = TypeVar("T")


def schema_of(options: type, name: str, *, exclude: tuple[str, ...] = (), **extra: tuple[Any, Any]) -> type:
    """A mutable dataclass with the fields of ``options`` (less ``exclude``) plus ``extra`` fields first.

    Args:
        options: a stage's frozen options dataclass.
        name: the schema's class name.
        exclude: fields that come from elsewhere (for example the run-wide ``progress``).
        extra: ``name=(type, default)`` fields the stage takes as arguments rather than options.
    """
    hints = typing.get_type_hints(options)
    specs: list[tuple[str, Any, Any]] = [(key, kind, field(default=default)) for key, (kind, default) in extra.items()]
    for f in dataclasses.fields(options):
        if f.name in exclude:
            continue
        kind = hints[f.name]
        if typing.get_origin(kind) is tuple:
            kind = list[typing.get_args(kind)[0]]  # type: ignore[misc]
            specs.append((f.name, kind, field(default_factory=functools.partial(list, f.default))))
        else:
            specs.append((f.name, kind, field(default=f.default)))
    return dataclasses.make_dataclass(name, specs, namespace={"__module__": __name__})  # picklable: joblib workers


EmbeddingConfig = schema_of(LoadOptions, "EmbeddingConfig", exclude=("progress",), path=(str, MISSING))
TokenizerConfig = schema_of(TokenizerOptions, "TokenizerConfig")
VocabConfig = schema_of(VocabOptions, "VocabConfig")
InduceConfig = schema_of(InduceOptions, "InduceConfig")
TrainConfig = schema_of(TrainOptions, "TrainConfig")
EvaluateConfig = schema_of(EvaluateOptions, "EvaluateConfig")
OOV_POLICIES = ("error", "zeros", "subword")


@dataclass
class CorpusConfig:
    """Fields every corpus source has."""

    source: str = MISSING
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # type: ignore[valid-type]
    cache_dir: str | None = None


@dataclass
class FilesCorpusConfig(CorpusConfig):
    """``corpus=files``: local files and globs (plain, gzip, bz2, xz), a document per line or file, JSON Lines."""

    source: str = "files"
    paths: list[str] = MISSING
    unit: str = "line"
    field: str | None = None
    store: bool = False


@dataclass
class TfdsCorpusConfig(CorpusConfig):
    """``corpus=tfds``: a TensorFlow Datasets dataset's text field."""

    source: str = "tfds"
    name: str = MISSING
    split: str = "train"
    field: str = "text"
    data_dir: str | None = None
    download: bool = False


@dataclass
class PythonDocsCorpusConfig(CorpusConfig):
    """``corpus=python_docs``: docstrings of the standard library and installed packages."""

    source: str = "python_docs"
    packages: list[str] = field(default_factory=lambda: ["stdlib", "numpy", "keras", "mlflow"])


@dataclass
class ExportConfig:
    """Formats written to ``<run dir>/export/embedding.<ext>``, and the Embedding Projector's files."""

    formats: list[str] = field(default_factory=lambda: ["word2vec_text"])
    projector: bool = False
    projector_rows: int = 10000


@dataclass
class TrackingConfig:
    """MLflow tracking; ``tracking=disabled`` runs without MLflow."""

    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "embadapt"
    run_name: str | None = None
    connect_timeout: float = 10.0
    register_as: str | None = None
    oov: str = "subword"


@dataclass
class AdaptConfig:
    """The primary config of ``tasks.adapt``."""

    embedding: EmbeddingConfig = MISSING  # type: ignore[valid-type]
    corpus: Any = MISSING
    vocab: VocabConfig = MISSING  # type: ignore[valid-type]
    induce: InduceConfig = MISSING  # type: ignore[valid-type]
    train: TrainConfig = MISSING  # type: ignore[valid-type]
    evaluate: EvaluateConfig = MISSING  # type: ignore[valid-type]
    export: ExportConfig = MISSING
    tracking: TrackingConfig = MISSING
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class EvaluateTaskConfig:
    """The primary config of ``tasks.evaluate``: the table evaluated is ``embedding``."""

    embedding: EmbeddingConfig = MISSING  # type: ignore[valid-type]
    corpus: Any = None
    evaluate: EvaluateConfig = MISSING  # type: ignore[valid-type]
    tracking: TrackingConfig = MISSING
    base: str | None = None
    manifest: str | None = None
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class GateConfig:
    """One promotion gate (see :class:`pipeline.gates.Gate`)."""

    metric: str = MISSING
    higher_is_better: bool = True
    max_drop: float = 0.0
    min_value: float | None = None
    max_value: float | None = None


@dataclass
class ScheduleConfig:
    """``tasks.retrain``: where shards arrive, how much older text to replay, the gates, the lock.

    ``source`` is a folder of shard files (``pattern``), or ``tfds:<name>``: a TFDS dataset whose
    prepared (version, split) pairs under ``data_dir`` are the shards, ``field`` their text.
    """

    source: str = MISSING
    pattern: str = "*"
    replay: float = 0.2
    gates: list[GateConfig] = field(default_factory=list)
    work_dir: str = "retrain"
    lock: str | None = None
    data_dir: str | None = None
    field: str = "text"  # last: the name hides dataclasses.field in the class body


@dataclass
class RetrainConfig(AdaptConfig):
    """The primary config of ``tasks.retrain``: adapt's, plus the schedule."""

    schedule: ScheduleConfig = MISSING


def register() -> None:
    """Register the schemas under the names the YAML files' defaults lists use."""
    store = ConfigStore.instance()
    store.store(name="adapt_schema", node=AdaptConfig)
    store.store(name="evaluate_task_schema", node=EvaluateTaskConfig)
    store.store(name="retrain_schema", node=RetrainConfig)
    # outside the corpus group, so that --help lists only real options; the YAML files pull them in
    # with `- /<name>@_here_`
    store.store(name="files_corpus_schema", node=FilesCorpusConfig)
    store.store(name="python_docs_corpus_schema", node=PythonDocsCorpusConfig)
    store.store(name="tfds_corpus_schema", node=TfdsCorpusConfig)


register()


@dataclass(frozen=True)
class AdaptOptions:
    """Every stage's options, built (and so validated) from a composed config."""

    embedding_path: str
    load: LoadOptions
    corpus: FilesCorpusConfig | PythonDocsCorpusConfig | TfdsCorpusConfig
    tokenizer: TokenizerOptions
    vocab: VocabOptions
    induce: InduceOptions
    train: TrainOptions
    evaluate: EvaluateOptions
    export: ExportConfig
    tracking: TrackingConfig
    seed: int
    device: str
    progress: bool


def _options(kind: type, node: Any) -> Any:
    values = {f.name: getattr(node, f.name) for f in dataclasses.fields(kind) if hasattr(node, f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return kind(**values)


def check_keys(node: DictConfig, path: str = "") -> None:
    """Refuse keys a schema does not declare (Hydra's ``+key=value`` can add them to typed nodes).

    Raises:
        ValueError: naming the unknown key, its value and the keys the schema takes.
    """
    kind = OmegaConf.get_type(node)
    declared = {f.name for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else None
    for key in node:
        name = f"{path}{key!s}"
        child = node._get_node(key)  # noqa: SLF001 - read the node without resolving interpolations
        if declared is not None and key not in declared:
            value = child._value() if child is not None else None  # noqa: SLF001
            raise ValueError(f"unknown key {name}={value!r}; "
                             f"{path.rstrip('.') or 'the config'} takes {', '.join(sorted(declared))}")
        if isinstance(child, DictConfig):
            check_keys(child, f"{name}.")


def to_options(cfg: DictConfig) -> AdaptOptions:
    """Validate a composed config and turn it into stage options.

    Raises:
        InputError: an unknown key, a missing value or a value out of range, naming the key and the value.
    """
    return _validated(_to_options, cfg)


def _validated(build: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    try:
        return build(cfg)
    except MissingMandatoryValue as err:
        raise InputError("config", f"{err.full_key} has no value", hint=f"set it: {err.full_key}=...") from None
    except ValueError as err:
        raise InputError("config", str(err).splitlines()[0],
                         hint="see --help for the groups; --cfg job shows the composed config") from None


def _check_run_wide(device: str, tracking: TrackingConfig) -> None:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if tracking.enabled and not tracking.experiment.strip():
        raise ValueError("tracking.experiment must name an experiment, got ''")
    if tracking.connect_timeout <= 0:
        raise ValueError(f"tracking.connect_timeout must be positive, got {tracking.connect_timeout}")
    if tracking.oov not in OOV_POLICIES:
        raise ValueError(f"tracking.oov must be one of {', '.join(OOV_POLICIES)}, got {tracking.oov!r}")
    if tracking.register_as is not None and not tracking.enabled:
        raise ValueError(f"tracking.register_as={tracking.register_as!r} needs tracking enabled")


def _to_options(cfg: DictConfig) -> AdaptOptions:
    check_keys(cfg)
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, AdaptConfig)
    return _adapt_options(obj)


def _adapt_options(obj: AdaptConfig) -> AdaptOptions:
    if obj.export.projector_rows < 1:
        raise ValueError(f"export.projector_rows must be positive, got {obj.export.projector_rows}")
    check_formats(obj.export.formats)
    return AdaptOptions(
        **_shared(obj),
        tokenizer=_options(TokenizerOptions, obj.corpus.tokenizer),
        vocab=_options(VocabOptions, obj.vocab),
        induce=_options(InduceOptions, obj.induce),
        train=_options(TrainOptions, obj.train),
        export=obj.export,
    )


def _shared(obj: AdaptConfig | EvaluateTaskConfig) -> dict[str, Any]:
    """The options both tasks take, from their validated configs."""
    _check_run_wide(obj.device, obj.tracking)
    embedding: Any = obj.embedding  # a schema made at run time: mypy cannot see its fields
    return {"embedding_path": embedding.path,
            "load": dataclasses.replace(_options(LoadOptions, embedding), progress=obj.progress),
            "corpus": obj.corpus, "evaluate": _options(EvaluateOptions, obj.evaluate), "tracking": obj.tracking,
            "seed": obj.seed, "device": obj.device, "progress": obj.progress}


@dataclass(frozen=True)
class EvaluateTaskOptions:
    """``tasks.evaluate``'s options, built (and so validated) from a composed config."""

    embedding_path: str
    load: LoadOptions
    corpus: FilesCorpusConfig | PythonDocsCorpusConfig | TfdsCorpusConfig | None
    tokenizer: TokenizerOptions | None
    evaluate: EvaluateOptions
    tracking: TrackingConfig
    base: str | None
    manifest: str | None
    seed: int
    device: str
    progress: bool


def to_evaluate_options(cfg: DictConfig) -> EvaluateTaskOptions:
    """Validate a composed ``tasks.evaluate`` config and turn it into options.

    Raises:
        InputError: an unknown key, a missing value or a value out of range, naming the key and the value.
    """
    return _validated(_to_evaluate_options, cfg)


def _to_evaluate_options(cfg: DictConfig) -> EvaluateTaskOptions:
    check_keys(cfg)
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, EvaluateTaskConfig)
    return EvaluateTaskOptions(
        **_shared(obj),
        tokenizer=_options(TokenizerOptions, obj.corpus.tokenizer) if obj.corpus is not None else None,
        base=obj.base,
        manifest=obj.manifest,
    )


@dataclass(frozen=True)
class RetrainOptions:
    """``tasks.retrain``'s options: one adapt round's, and the schedule's."""

    adapt: AdaptOptions
    schedule: ScheduleConfig
    gates: tuple[Gate, ...]
    name: str


def to_retrain_options(cfg: DictConfig) -> RetrainOptions:
    """Validate a composed ``tasks.retrain`` config and turn it into options.

    Raises:
        InputError: an unknown key, a missing value or a value out of range, naming the key and the value.
    """
    return _validated(_to_retrain_options, cfg)


def _to_retrain_options(cfg: DictConfig) -> RetrainOptions:
    check_keys(cfg)
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, RetrainConfig)
    adapt = _adapt_options(obj)
    schedule = obj.schedule
    if not adapt.tracking.enabled or not adapt.tracking.register_as:
        raise ValueError("tracking.register_as must name the registered model the schedule retrains, got "
                         f"{adapt.tracking.register_as!r} (with tracking enabled)")
    if not 0.0 <= schedule.replay <= 1.0:
        raise ValueError(f"schedule.replay must be within [0, 1], got {schedule.replay}")
    gates = tuple(Gate(**dataclasses.asdict(g)) for g in schedule.gates)
    return RetrainOptions(adapt, schedule, gates, adapt.tracking.register_as)
