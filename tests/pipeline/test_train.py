"""Fine-tuning: only trainable rows move, whatever the optimizer; repeated indices; resume; divergence."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from planted import NEW, planted_table, write_planted

import pipeline.train.loop as loop_module
from pipeline.adapted import append_induced
from pipeline.corpus import files_corpus
from pipeline.counts import TokenCounts, count_tokens
from pipeline.errors import InputError, TrainingDivergedError
from pipeline.induce import InducedVectors
from pipeline.integrity import check_integrity
from pipeline.table import EmbeddingTable
from pipeline.tokenize import Tokenizer
from pipeline.train.data import (
    TrainingVocab,
    Windows,
    WindowStream,
    extract_windows,
    keep_probabilities,
    training_vocab,
)
from pipeline.train.lazy_adam import LazyAdam
from pipeline.train.loop import fine_tune, make_strategy, sum_duplicates
from pipeline.train.objectives import window_sgns_loss
from pipeline.train.options import OPTIMIZERS, TrainOptions

UNUSED_ROWS = 2000  # table rows the corpus never uses: the table is much larger than what training reads
SHIFTED = ["apple", "the"]  # "the" is a context in nearly every window


@dataclasses.dataclass(frozen=True)
class Setup:
    base: EmbeddingTable
    induced: InducedVectors
    counts: TokenCounts
    vocab: TrainingVocab
    windows: Windows
    directory: Path


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    planted = write_planted(tmp_path / "data")
    table = planted_table()
    rng = np.random.default_rng(5)
    base = table.append([f"unused{i}" for i in range(UNUSED_ROWS)],
                        rng.normal(0, 1, (UNUSED_ROWS, table.dim)).astype(np.float32))
    corpus = files_corpus([str(planted.corpus_path)])
    counts = count_tokens(corpus, Tokenizer(), progress=False)
    induced = InducedVectors(tuple(NEW), rng.normal(0, 1, (len(NEW), base.dim)).astype(np.float32),
                             ("random",) * len(NEW), (0,) * len(NEW), ())
    vocab = training_vocab(base, induced.tokens, induced.vectors, SHIFTED, counts)
    windows = extract_windows(corpus, Tokenizer(), vocab, window=3, heldout=0.2, directory=tmp_path / "train",
                              progress=False)
    return Setup(base, induced, counts, vocab, windows, tmp_path / "train")


def train(setup: Setup, name: str = "run", on_metrics: Callable[[dict[str, float], int], None] | None = None,
          **changes: object) -> tuple[np.ndarray, dict[str, float], Path]:
    options = dataclasses.replace(TrainOptions(window=3, batch_size=16, epochs=3, checkpoint_every=5, sample=0.0,
                                               log_every=1, lr=0.05), **changes)
    directory = setup.directory / name
    trained = fine_tune(setup.vocab, setup.windows, options, directory=directory, seed=0,
                        strategy=make_strategy("default", "/CPU:0"), on_metrics=on_metrics, progress=False)
    return trained.vectors, trained.metrics, directory


def test_training_vocab_puts_trainable_rows_first_and_reads_only_corpus_rows(setup: Setup) -> None:
    vocab = setup.vocab
    assert vocab.tokens[: vocab.trainable] == (*NEW, *SHIFTED)
    assert vocab.anchored.tolist() == [False] * len(NEW) + [True] * len(SHIFTED)
    assert not any(t.startswith("unused") for t in vocab.tokens)  # rows the corpus never uses are not read
    row = vocab.index["cello"]
    assert np.array_equal(vocab.vectors[row], setup.base.vector("cello"))
    assert vocab.counts[row] == setup.counts.counts["cello"]


def test_mapped_contexts_go_through_the_induction_map(setup: Setup) -> None:
    rng = np.random.default_rng(2)
    context_map = rng.normal(0, 1, (setup.base.dim, setup.base.dim))
    vocab = dataclasses.replace(setup.vocab, context_map=context_map)
    mapped = vocab.context_vectors("mapped")
    np.testing.assert_allclose(mapped, setup.vocab.vectors @ context_map, rtol=1e-4, atol=1e-4)
    assert vocab.context_vectors("frozen") is vocab.vectors
    assert setup.vocab.context_vectors("mapped") is setup.vocab.vectors  # no map: the rows themselves
    options = TrainOptions(window=3, batch_size=16, epochs=2, sample=0.0, context="mapped", heldout=0.0)
    trained = fine_tune(vocab, setup.windows, options, directory=setup.directory / "mapped", seed=0,
                        strategy=make_strategy("default", "/CPU:0"), progress=False)
    unmapped = fine_tune(setup.vocab, setup.windows, options, directory=setup.directory / "unmapped", seed=0,
                         strategy=make_strategy("default", "/CPU:0"), progress=False)
    assert not np.allclose(trained.vectors, unmapped.vectors)


def test_windows_hold_each_trainable_occurrence_with_its_neighbours(setup: Setup) -> None:
    windows = setup.windows
    total = sum(setup.counts.counts[t] for t in (*NEW, *SHIFTED))
    assert len(windows.train) + len(windows.heldout) == total
    assert 0 < len(windows.heldout) < len(windows.train)
    assert set(np.unique(windows.train[:, 0])) <= set(range(setup.vocab.trainable))
    assert (windows.train[:, 1:] >= -1).all() and (windows.train[:, 1:] < len(setup.vocab.tokens)).all()


def test_kept_probabilities_are_the_chance_the_drawn_masks_keep_a_window() -> None:
    # window 2, contexts at -2 -1 +1 +2; keep: id 0 always, id 1 and 2 half the time, id 3 never
    keep = np.array([1.0, 0.5, 0.5, 0.0])
    rows = np.array([[0, -1, 1, -1, 2],   # width 1 sees id 1 (kept 1/2); width 2 also id 2: 1 - (1/2 + 1/4) / 2
                     [3, 0, 0, 0, 0],     # its centre is never kept
                     [0, -1, -1, -1, -1],  # no context at all
                     [1, 0, 3, 3, 2]], dtype=np.int32)  # centre kept 1/2; width 1 sees only id 3, width 2 id 0
    stream = WindowStream(Windows(rows, rows[:0], 2), keep, batch_size=4, epochs=1, seed=0)
    np.testing.assert_allclose(stream.kept_probabilities(), [0.625, 0.0, 0.0, 0.5 * (1 - (1.0 + 0.0) / 2)])
    # and what the masks drawn for training keep, over many draws
    many = np.repeat(rows, 20000, axis=0)
    drawn = stream._used_contexts(many, np.random.default_rng(1)).any(axis=1).reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(drawn, stream.kept_probabilities(), atol=0.01)


@pytest.mark.parametrize("certain", [True, False])
def test_planned_steps_are_the_steps_a_run_takes(monkeypatch: pytest.MonkeyPatch, certain: bool) -> None:
    import pipeline.train.data as data_module

    monkeypatch.setattr(data_module, "CHUNK_WINDOWS", 512)  # many chunks, each rounded up to whole batches
    rng = np.random.default_rng(5)
    counts = rng.zipf(1.5, 300).clip(1, 10_000)
    rows = rng.integers(0, 300, (20_000, 11)).astype(np.int32)
    rows[:, 1:][rng.random((20_000, 10)) < 0.8] = -1  # outside the document or without a vector: few contexts
    rows[:300, 1:] = -1  # windows with no context at all: never kept
    if certain:  # every other window has a context next to its centre, which every drawn width reaches
        rows[300:, 5] = rng.integers(0, 300, 20_000 - 300)
    stream = WindowStream(Windows(rows, rows[:0], 5), keep_probabilities(counts, 0.0 if certain else 0.01),
                          batch_size=64, epochs=3, seed=2)
    taken = sum(1 for _ in stream.batches())
    if certain:  # no subsampling and every window's fate known: the plan is exact
        assert stream.planned_steps() == taken
    else:
        assert stream.keep.min() < 0.5  # frequent tokens are subsampled, and widths hide far contexts
        assert abs(stream.planned_steps() - taken) <= 0.02 * taken


@pytest.mark.parametrize("context", ["frozen", "mapped", "learned"])
@pytest.mark.parametrize(("optimizer", "jit_compile"), [(optimizer, jit) for optimizer in OPTIMIZERS
                                                        for jit in ("true", "false") if optimizer != "lazy_adam"
                                                        or jit == "false"])
def test_only_trainable_rows_move_for_every_optimizer(setup: Setup, optimizer: str, jit_compile: str,
                                                       context: str) -> None:
    # frozen rows ("of", "and", cluster words) are contexts in every batch; Adam's moments, Adagrad's
    # accumulators and AdamW's decay would move them if they were in any optimized variable (compiled
    # step or not)
    vectors, metrics, directory = train(setup, optimizer=optimizer, context=context, heldout=0.0,
                                        weight_decay=0.1, jit_compile=jit_compile)
    assert metrics["train/steps"] > 5 and metrics["train/frozen_max_abs_diff"] == 0.0
    k = setup.vocab.trainable
    assert not np.allclose(vectors, setup.vocab.vectors[:k])  # the trainable rows did move
    adapted = append_induced(setup.base, setup.induced, _trained(setup, vectors))
    report = check_integrity(setup.base, adapted)
    assert report.ok and report.frozen_changed_rows == 0
    assert adapted.trained_rows == tuple(setup.base.index_of(t) for t in SHIFTED)
    frozen = np.ones(len(setup.base), dtype=bool)
    frozen[list(adapted.trained_rows)] = False
    assert np.array_equal(adapted.table.matrix[: len(setup.base)][frozen].view(np.uint32),
                          setup.base.matrix[frozen].view(np.uint32))
    for token, row in zip(SHIFTED, adapted.trained_rows, strict=True):
        assert not np.array_equal(adapted.table.matrix[row], setup.base.vector(token))
    # no variable in the checkpoint is table-sized: optimizer slots are trainable-rows x dim
    shapes = dict(tf.train.list_variables(str(directory / "checkpoints")))
    assert max(shape[0] for shape in shapes.values() if shape) <= len(setup.vocab.tokens) < len(setup.base)
    slots = [shape for name, shape in shapes.items() if "optimizer" in name and len(shape) == 2]
    assert bool(slots) == (optimizer != "sgd")  # plain SGD keeps no state
    assert all(shape[0] in (k, len(setup.vocab.tokens)) for shape in slots)


def _trained(setup: Setup, vectors: np.ndarray):  # noqa: ANN202
    from pipeline.train.rows import TrainedRows

    return TrainedRows(setup.vocab.tokens[: setup.vocab.trainable], vectors, {})


def test_shifted_rows_start_where_induction_put_them_and_are_anchored_to_their_pretrained_value(
        setup: Setup) -> None:
    base, k = setup.base, setup.vocab.trainable
    pretrained = base.matrix[base.indices(SHIFTED)]
    start = (pretrained + 3.0).astype(np.float32)  # far from the pretrained rows
    vocab = training_vocab(base, setup.induced.tokens, setup.induced.vectors, SHIFTED, setup.counts,
                           shifted_vectors=start)
    shifted_rows = slice(len(NEW), k)
    assert np.array_equal(vocab.vectors[shifted_rows], start)
    assert np.array_equal(vocab.anchor_values()[shifted_rows], pretrained)
    assert np.array_equal(vocab.anchor_values()[: len(NEW)], setup.induced.vectors)
    # a strong anchor pulls the shifted rows from their start back toward the pretrained rows
    options = TrainOptions(window=3, batch_size=16, epochs=3, sample=0.0, lr=0.05, heldout=0.0, anchor_mu=5.0)
    trained = fine_tune(vocab, setup.windows, options, directory=setup.directory / "anchored", seed=0,
                        strategy=make_strategy("default", "/CPU:0"), progress=False)
    before = np.linalg.norm(start - pretrained, axis=1)
    after = np.linalg.norm(trained.vectors[shifted_rows] - pretrained, axis=1)
    assert (after < 0.75 * before).all(), (before, after)  # anchored to the start, they would stay near 12


def test_shifted_starting_vectors_are_written_without_training(setup: Setup) -> None:
    rows = setup.base.indices(SHIFTED)
    start = InducedVectors(tuple(SHIFTED), (setup.base.matrix[rows] * 0.5).astype(np.float32),
                           ("pretrained+alacarte",) * len(SHIFTED), (9,) * len(SHIFTED), ())
    adapted = append_induced(setup.base, setup.induced, None, start)
    assert adapted.trained_rows == tuple(int(r) for r in rows)
    assert np.array_equal(adapted.table.matrix[rows], start.vectors)
    assert np.array_equal(adapted.table.matrix[len(setup.base):], setup.induced.vectors)
    frozen = np.ones(len(setup.base), dtype=bool)
    frozen[rows] = False
    assert np.array_equal(adapted.table.matrix[: len(setup.base)][frozen].view(np.uint32),
                          setup.base.matrix[frozen].view(np.uint32))
    assert check_integrity(setup.base, adapted).ok
    # fine-tuned values win over the starting ones
    trained = _trained(setup, np.full((setup.vocab.trainable, setup.base.dim), 0.25, np.float32))
    assert (append_induced(setup.base, setup.induced, trained, start).table.matrix[rows] == 0.25).all()


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_repeated_centres_in_a_batch_sum_their_gradients(optimizer: str) -> None:
    # the sparse path (tf.gather -> IndexedSlices -> sum_duplicates -> Keras optimizer) against the same
    # loss through a dense one-hot product: a lost duplicate update would make them differ (without
    # sum_duplicates, Keras' Adagrad, Adam and AdamW keep one of the repeated slices)
    rng = np.random.default_rng(0)
    start = rng.normal(0, 0.5, (4, 8)).astype(np.float32)
    contexts = tf.constant(rng.normal(0, 0.5, (6, 8)).astype(np.float32))
    centres = tf.constant([1, 1, 1, 2, 1], dtype=tf.int32)
    ids = tf.constant(rng.integers(-1, 6, (5, 4)).astype(np.int32))
    pool = tf.gather(contexts, [0, 3, 5])
    mask = tf.cast(ids >= 0, tf.float32)

    def updated(dense: bool) -> np.ndarray:
        rows = tf.Variable(start)
        opt = {"sgd": keras.optimizers.SGD, "adagrad": keras.optimizers.Adagrad, "adam": keras.optimizers.Adam,
               "adamw": keras.optimizers.AdamW, "lazy_adam": LazyAdam}[optimizer](0.1)
        for _ in range(3):
            with tf.GradientTape() as tape:
                w = tf.one_hot(centres, 4) @ rows if dense else tf.gather(rows, centres)
                loss = tf.reduce_sum(window_sgns_loss(w, tf.gather(contexts, tf.maximum(ids, 0)), mask, pool, 5.0))
            grad = tape.gradient(loss, [rows])
            assert isinstance(grad[0], tf.IndexedSlices) != dense
            opt.apply_gradients(zip(map(sum_duplicates, grad), [rows], strict=True))
        return rows.numpy()

    sparse, dense = updated(False), updated(True)
    # lazy_adam's sparse step is its own arithmetic on the gathered rows (dense gradients take Adam's):
    # equal up to float32 rounding, which Adam's 1/sqrt(v) amplifies; a lost update would be ~0.1 off
    np.testing.assert_allclose(sparse, dense, rtol=1e-5, atol=1e-5 if optimizer == "lazy_adam" else 1e-6)
    assert not np.allclose(sparse[1], start[1])


def test_held_out_loss_falls_and_the_best_rows_are_kept(setup: Setup) -> None:
    _, metrics, _ = train(setup, epochs=6, patience=0)
    assert abs(metrics["train/steps"] - metrics["train/planned_steps"]) <= 2  # the learning rate's plan holds
    assert metrics["train/heldout_loss_best"] < metrics["train/heldout_loss_initial"]
    assert metrics["train/heldout_loss_best"] <= metrics["train/heldout_loss_final"]


def test_early_stop_when_the_held_out_loss_stops_improving(setup: Setup) -> None:
    # a learning rate far too high makes the held-out loss worse at once: stop after `patience` evaluations
    vectors, metrics, _ = train(setup, optimizer="sgd", lr=50.0, epochs=20, patience=2)
    assert metrics["train/stopped_early"] == 1.0
    assert metrics["train/steps"] < metrics["train/planned_steps"] / 2
    # the best evaluation was the start: the result is the starting rows
    assert np.array_equal(vectors, setup.vocab.vectors[: setup.vocab.trainable])


def test_a_crashed_run_resumes_to_the_same_rows_as_an_uninterrupted_one(setup: Setup) -> None:
    expected, _, _ = train(setup, name="whole", epochs=4)
    options = TrainOptions(window=3, batch_size=16, epochs=4, checkpoint_every=5, log_every=1, lr=0.05, sample=0.0)
    directory = setup.directory / "crashed"

    def crash(metrics: dict[str, float], step: int) -> None:
        if step == 13:  # after the checkpoint of step 10, before that of step 15
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fine_tune(setup.vocab, setup.windows, options, directory=directory, seed=0,
                  strategy=make_strategy("default", "/CPU:0"), on_metrics=crash, progress=False)
    resumed = fine_tune(setup.vocab, setup.windows, options, directory=directory, seed=0,
                        strategy=make_strategy("default", "/CPU:0"), progress=False)
    assert resumed.metrics["train/resumed"] == 1.0
    assert np.array_equal(resumed.vectors.view(np.uint32), expected.view(np.uint32))


def test_resuming_under_other_options_is_refused(setup: Setup) -> None:
    train(setup, name="same")
    with pytest.raises(InputError, match=r"checkpoints: the checkpoint was written for other .*lr"):
        train(setup, name="same", lr=0.01)
    vectors, metrics, _ = train(setup, name="same", lr=0.01, resume=False)  # starting over is allowed
    assert metrics["train/resumed"] == 0.0
    # the same options over other starting vectors (induction ran with other options): refused too
    moved = dataclasses.replace(setup, vocab=dataclasses.replace(setup.vocab, vectors=setup.vocab.vectors + 1.0))
    with pytest.raises(InputError, match=r"checkpoint was written for other .*vectors_sha256"):
        train(moved, name="same", lr=0.01)


def test_a_checkpoint_resumes_under_the_same_compilation_only(setup: Setup) -> None:
    train(setup, name="jit")  # auto: Adam's step is compiled
    _, metrics, _ = train(setup, name="jit", jit_compile="true")  # the same compiled step: it resumes
    assert metrics["train/resumed"] == 1.0
    with pytest.raises(InputError, match=r"checkpoint was written for other .*compiled"):
        train(setup, name="jit", jit_compile="false")  # an uncompiled step rounds otherwise


def test_a_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(setup: Setup) -> None:
    with pytest.raises(TrainingDivergedError, match=r"training diverged at step (\d+): the loss is (nan|inf)") as err:
        train(setup, name="nan", optimizer="sgd", lr=1e36, checkpoint_every=1, heldout=0.0, anchor_mu=0.0)
    step = err.value.step
    assert step > 1 and err.value.checkpoint is not None
    assert err.value.checkpoint.endswith(f"ckpt-{step - 1}")
    kept = tf.train.load_variable(err.value.checkpoint, "rows/.ATTRIBUTES/VARIABLE_VALUE")
    assert np.isfinite(kept).all()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("lr", 0.0, "train.lr must be positive, got 0.0"),
    ("lr", -1.0, "train.lr must be positive"),
    ("batch_size", 0, "train.batch_size must be at least 1, got 0"),
    ("optimizer", "rmsprop", "train.optimizer must be one of sgd, adagrad, adam, adamw, lazy_adam"),
    ("jit_compile", "maybe", "train.jit_compile must be one of auto, true, false, got 'maybe'"),
])
def test_bad_options_are_refused_with_the_value(key: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        TrainOptions(**{key: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "named"), [({"objective": "glove"}, "train=glove"),
                                               ({"optimizer": "lazy_adam"}, "train.optimizer=lazy_adam"),
                                               ({"strategy": "mirrored"}, "train.strategy=mirrored")])
def test_jit_compile_true_is_refused_where_the_step_cannot_be_compiled(changes: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=f"train.jit_compile=true .*{named}.*set train.jit_compile=auto"):
        TrainOptions(jit_compile="true", **changes)  # type: ignore[arg-type]
    assert not TrainOptions(jit_compile="auto", **changes).compiled  # type: ignore[arg-type]
    assert TrainOptions(jit_compile="auto").compiled and not TrainOptions(jit_compile="false").compiled
    # auto compiles Adam and AdamW (Keras updates every trainable row anyway); SGD and Adagrad only on true
    assert TrainOptions(jit_compile="auto", optimizer="adamw").compiled
    for optimizer in ("sgd", "adagrad"):
        assert not TrainOptions(jit_compile="auto", optimizer=optimizer).compiled
        assert TrainOptions(jit_compile="true", optimizer=optimizer).compiled


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("first_row", ["new", "anchored"])
def test_the_compiled_step_trains_as_the_plain_one(setup: Setup, monkeypatch: pytest.MonkeyPatch, optimizer: str,
                                                   first_row: str) -> None:
    # batch_size 16 leaves short batches: the compiled step sees them padded with windows of centre 0 and
    # no context, which must add no pair, no loss and no update, also when row 0 is anchored (a shifted
    # token: its anchor penalty must not count for the padding)
    if first_row == "anchored":  # no new token: the shifted rows come first
        vocab = training_vocab(setup.base, (), np.zeros((0, setup.base.dim), np.float32), SHIFTED, setup.counts)
        corpus = files_corpus([str(setup.directory.parent / "data" / "corpus.txt")])
        windows = extract_windows(corpus, Tokenizer(), vocab, window=3, heldout=0.2,
                                  directory=setup.directory / "anchored_windows", progress=False)
        setup = dataclasses.replace(setup, vocab=vocab, windows=windows)
        assert setup.vocab.anchored[0]
    padded: list[int] = []
    pad = loop_module._padded

    def watch(batch: tuple[np.ndarray, ...], size: int) -> tuple[np.ndarray, ...]:
        padded.append(size - len(batch[0]))
        return pad(batch, size)

    monkeypatch.setattr(loop_module, "_padded", watch)
    plain, plain_metrics, _ = train(setup, name="plain", optimizer=optimizer, jit_compile="false", patience=0,
                                    anchor_mu=5.0)
    assert not padded  # the plain step takes batches as they are
    compiled, metrics, _ = train(setup, name="compiled", optimizer=optimizer, jit_compile="true", patience=0,
                                 anchor_mu=5.0)
    assert max(padded) > 0  # some batches were padded
    assert metrics["train/steps"] == plain_metrics["train/steps"] > 5
    assert not np.allclose(plain, setup.vocab.vectors[: setup.vocab.trainable])
    np.testing.assert_allclose(compiled, plain, rtol=1e-4, atol=1e-6)  # float rounding of fused ops only
    assert metrics["train/heldout_loss_final"] == pytest.approx(plain_metrics["train/heldout_loss_final"], rel=1e-5)
    assert metrics["train/frozen_max_abs_diff"] == 0.0


def test_glove_trains_and_keeps_frozen_rows(setup: Setup) -> None:
    vectors, metrics, _ = train(setup, objective="glove", optimizer="adagrad", epochs=10, patience=0)
    assert metrics["train/heldout_loss_best"] < metrics["train/heldout_loss_initial"]
    adapted = append_induced(setup.base, setup.induced, _trained(setup, vectors))
    assert check_integrity(setup.base, adapted).ok


@pytest.mark.parametrize("changes", [{"evals_per_epoch": 3}, {"eval_every": 7}])
def test_evaluations_are_evenly_spaced(setup: Setup, changes: dict[str, int]) -> None:
    evaluated: list[int] = []

    def watch(metrics: dict[str, float], step: int) -> None:
        if "train/heldout_loss" in metrics:
            evaluated.append(step)

    _, metrics, _ = train(setup, "spaced", on_metrics=watch, monitor="heldout_loss", patience=0, **changes)
    planned = int(metrics["train/planned_steps"])
    interval = changes.get("eval_every") or round(planned / (3 * changes["evals_per_epoch"]))
    assert evaluated == [0, *range(interval, planned + 1, interval)]


def test_probes_judge_training_and_are_never_written_back(setup: Setup) -> None:
    # two table tokens trained as if new; their cosine to their true vectors is what training is judged by
    rng = np.random.default_rng(3)
    probe_tokens = ["cello", "bolt"]
    vocab = training_vocab(setup.base, setup.induced.tokens, setup.induced.vectors, SHIFTED, setup.counts,
                           probes=(probe_tokens, rng.normal(0, 1, (2, setup.base.dim)).astype(np.float32)))
    assert vocab.tokens[: vocab.trainable] == (*NEW, *probe_tokens, *SHIFTED) and vocab.probes == 2
    contexts = vocab.context_vectors("frozen")  # as contexts, probes keep their true vectors
    np.testing.assert_array_equal(contexts[vocab.probe_rows], setup.base.matrix[setup.base.indices(probe_tokens)])
    windows = extract_windows(files_corpus([str(setup.directory.parent / "data" / "corpus.txt")]), Tokenizer(), vocab,
                              window=3, heldout=0.2, directory=setup.directory / "probes", progress=False)
    seen: list[float] = []

    def watch(metrics: dict[str, float], step: int) -> None:
        if "train/probe_cosine" in metrics:
            seen.append(metrics["train/probe_cosine"])

    options = TrainOptions(window=3, batch_size=16, epochs=4, sample=0.0, lr=0.05, patience=0, evals_per_epoch=1)
    trained = fine_tune(vocab, windows, options, directory=setup.directory / "probes", seed=0,
                        strategy=make_strategy("default", "/CPU:0"), on_metrics=watch, progress=False)
    assert trained.tokens == (*NEW, *SHIFTED)  # probes are not part of the result
    m = trained.metrics
    assert m["train/probes"] == 2.0 and len(seen) == 5  # the start and every epoch
    assert m["train/probe_cosine_initial"] == seen[0] and m["train/probe_cosine_best"] == pytest.approx(max(seen))
    # the last evaluation falls on the last step: the final figures are its own, not those of another evaluation
    assert m["train/probe_cosine_final"] == pytest.approx(seen[-1])
    if max(seen) == seen[0]:  # training never beat the start: the result is the start
        np.testing.assert_array_equal(trained.vectors[: len(NEW)], vocab.vectors[: len(NEW)])


def test_lazy_adam_moves_only_the_rows_of_the_step() -> None:
    # a row with momentum but no gradient in a step: Adam still moves it, LazyAdam leaves it and its moments
    start = np.arange(12, dtype=np.float32).reshape(4, 3) / 10

    def rows_after(optimizer: keras.optimizers.Optimizer) -> tuple[np.ndarray, np.ndarray]:
        rows = tf.Variable(start)
        after_first = None
        for touched in ([0, 1], [1]):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.gather(rows, touched) ** 2)
            optimizer.apply_gradients([(sum_duplicates(tape.gradient(loss, rows)), rows)])
            after_first = rows.numpy() if after_first is None else after_first
        return after_first, rows.numpy()

    first, second = rows_after(LazyAdam(0.1))
    np.testing.assert_array_equal(second[0], first[0])  # row 0: no gradient in step 2, not moved
    np.testing.assert_array_equal(second[2:], start[2:])  # never touched
    assert not np.array_equal(second[1], first[1])
    first_adam, second_adam = rows_after(keras.optimizers.Adam(0.1))
    assert not np.array_equal(second_adam[0], first_adam[0])  # Adam's momentum moves row 0 in step 2
    np.testing.assert_allclose(first, first_adam, atol=1e-5)  # the first step is Adam's, up to float32 rounding
