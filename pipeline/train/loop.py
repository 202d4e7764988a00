"""The fine-tuning loop: variables and optimizer on the device, the ``tf.function`` step, held-out
evaluation and early stop, checkpoints and resume, progress and step metrics.

Only the trainable rows are variables the optimizer sees (``trainable x dim``, and a learned
context table when ``train.context=learned``); every other row is read through ``tf.gather`` from a
non-trainable copy of the rows the corpus uses. So no optimizer slot is table-sized, no step copies
the table, and a frozen row cannot move: it is not in any variable an optimizer updates.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf
from tqdm import tqdm

from pipeline.errors import InputError, TrainingDivergedError
from pipeline.train.data import Position, TrainingVocab, Windows, WindowStream, keep_probabilities, unigram_table
from pipeline.train.lazy_adam import LazyAdam
from pipeline.train.objectives import anchor_penalty, glove_loss, sgns_loss, window_sgns_loss
from pipeline.train.options import TrainOptions
from pipeline.train.rows import TrainedRows
from pipeline.train.streams import CellStream, cell_arrays, cooccurrence_cells

log = logging.getLogger(__name__)

HELDOUT_SLICE = 16384
NEGATIVE_POOL = 64  # negatives drawn per step and replica, shared by the step's pairs
PREFETCH_BATCHES = 8  # batches the input generator prepares ahead of the step
# options that do not change what a run computes: a checkpoint written under other values still resumes
_RESUME_NEUTRAL = ("resume", "log_every", "checkpoint_every", "keep_checkpoints",
                   "jit_compile")  # what counts is whether the step is compiled: ``compiled`` in the signature


def sum_duplicates(gradient: tf.Tensor | tf.IndexedSlices) -> tf.Tensor | tf.IndexedSlices:
    """A sparse gradient with one slice per row, repeated rows' slices summed.

    ``tf.gather`` of a row twice in a batch gives two slices for it. Keras 3's Adagrad, Adam and
    AdamW, given such a gradient, update that row differently from the same gradient summed
    (tests/pipeline/test_train.py compares them with a dense path): part of an update is lost.
    SGD's ``scatter_sub`` would sum them, but every optimizer gets the same input.
    """
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    rows, position = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, position, tf.size(rows))
    return tf.IndexedSlices(values, rows, gradient.dense_shape)


def dense_rows(gradient: tf.Tensor | tf.IndexedSlices) -> tf.Tensor:
    """A gradient as a dense ``rows x dim`` tensor, repeated rows' slices summed (what XLA can compile;
    Keras' Adam and AdamW turn a sparse gradient dense anyway, which is why only they compile by default)."""
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    return tf.convert_to_tensor(gradient)


def make_strategy(name: str, device: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy for ``train.strategy``.

    ``default`` places everything on ``device``; ``mirrored`` replicates over every local GPU, or
    every logical CPU when there is no GPU; ``multi_worker`` spans the hosts of ``TF_CONFIG`` (it must
    be made before TensorFlow runs any op, so the adapt task makes it first).
    """
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.OneDeviceStrategy(device)


def make_optimizer(options: TrainOptions, planned_steps: int) -> keras.optimizers.Optimizer:
    """The Keras optimizer of ``train.optimizer``, its learning rate decaying linearly to ``train.min_lr``."""
    schedule = keras.optimizers.schedules.PolynomialDecay(options.lr, max(planned_steps, 1), options.min_lr, power=1.0)
    if options.optimizer == "sgd":
        return keras.optimizers.SGD(schedule)
    if options.optimizer == "adagrad":
        return keras.optimizers.Adagrad(schedule)
    if options.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=options.weight_decay)
    if options.optimizer == "lazy_adam":
        return LazyAdam(schedule)
    return keras.optimizers.Adam(schedule)


@dataclass(frozen=True)
class _Inputs:
    batches: Callable[[Position], Iterator[tuple[tuple[npt.NDArray[Any], ...], Position]]]
    signature: tuple[tf.TensorSpec, ...]
    planned_steps: int
    heldout: tuple[npt.NDArray[Any], ...]


def _inputs(vocab: TrainingVocab, windows: Windows, options: TrainOptions, seed: int) -> _Inputs:
    ids = tf.TensorSpec([None], tf.int32)
    if options.objective == "glove":
        columns = len(vocab.tokens)
        cells = cooccurrence_cells(windows.train, windows.offsets, vocab.trainable, columns)
        cell_stream = CellStream(cells, batch_size=options.batch_size, epochs=options.epochs, seed=seed,
                                 x_max=options.x_max, alpha=options.alpha)
        held = cooccurrence_cells(windows.heldout, windows.offsets, vocab.trainable, columns)
        if held.nnz:  # scaled to the training counts' size, so that log X is comparable
            held = held * (cells.sum() / held.sum())
        heldout = cell_arrays(held, options.x_max, options.alpha)
        return _Inputs(cell_stream.batches, (ids, ids, tf.TensorSpec([None], tf.float32),
                                             tf.TensorSpec([None], tf.float32)), cell_stream.planned_steps(), heldout)
    stream = WindowStream(windows, keep_probabilities(vocab.counts, options.sample), batch_size=options.batch_size,
                          epochs=options.epochs, seed=seed)
    centres, contexts = stream.heldout_pairs()
    table = unigram_table(vocab.counts)
    rng = np.random.default_rng([seed, 1 << 31])
    negatives = table[rng.integers(0, len(table), size=(len(centres), options.negatives))]
    return _Inputs(stream.batches, (ids, tf.TensorSpec([None, 2 * windows.window], tf.int32)),
                   stream.planned_steps(), (centres, contexts, negatives))


def _padded(batch: tuple[npt.NDArray[Any], ...], size: int) -> tuple[npt.NDArray[Any], ...]:
    """An sgns batch of ``size`` windows: the missing ones have centre 0 and every context masked, so
    they add no pair, no loss and no gradient."""
    centres, contexts = batch
    missing = size - len(centres)
    if missing <= 0:
        return batch
    return np.pad(centres, (0, missing)), np.pad(contexts, ((0, missing), (0, 0)), constant_values=-1)


def _signature(vocab: TrainingVocab, windows: Windows, options: TrainOptions, seed: int) -> dict[str, Any]:
    """What a checkpoint must agree with to be resumed: the options that shape training, and its inputs,
    down to the starting vectors, contexts and anchors (other induction options change them)."""
    digest = hashlib.sha256("\n".join(vocab.tokens).encode()).hexdigest()
    values = hashlib.sha256()
    for array in (vocab.vectors, vocab.anchors, vocab.probe_truth):  # anchors: None when they are the start
        if array is not None:
            values.update(np.ascontiguousarray(array).tobytes())
    chosen = {k: v for k, v in asdict(options).items() if k not in _RESUME_NEUTRAL}
    chosen["compiled"] = options.compiled  # auto and true compile alike; rounding differs from an uncompiled step
    return {"options": chosen, "seed": seed, "tokens_sha256": digest, "vectors_sha256": values.hexdigest(),
            "trainable": vocab.trainable, "windows": [len(windows.train), len(windows.heldout)]}


def fine_tune(vocab: TrainingVocab, windows: Windows, options: TrainOptions, *, directory: Path, seed: int,
              strategy: tf.distribute.Strategy, on_metrics: Callable[[dict[str, float], int], None] | None = None,
              progress: bool = True) -> TrainedRows:
    """Train the trainable rows of ``vocab``; checkpoints go to ``directory``.

    With ``options.resume`` and a checkpoint in ``directory`` written for the same inputs and
    options, training continues from it and ends with the rows an uninterrupted run ends with.

    Raises:
        InputError: the checkpoint in ``directory`` was written for other inputs or options.
        TrainingDivergedError: the loss stopped being finite (no checkpoint is written after that).
    """
    inputs = _inputs(vocab, windows, options, seed)
    k = vocab.trainable
    signature = _signature(vocab, windows, options, seed)
    checkpoints = directory / "checkpoints"
    signature_path = directory / "signature.json"
    if checkpoints.exists() and not options.resume:
        log.warning("%s: train.resume=false, starting over (the old checkpoints are removed)", checkpoints)
        shutil.rmtree(checkpoints)
    if checkpoints.exists() and signature_path.exists():
        written = json.loads(signature_path.read_text())
        if written != json.loads(json.dumps(signature)):
            changed = sorted(key for key in signature["options"] if signature["options"][key] != written.get(
                "options", {}).get(key)) or [k for k in signature if signature[k] != written.get(k)]
            raise InputError(str(checkpoints), f"the checkpoint was written for other training inputs or options "
                             f"({', '.join(map(str, changed[:5]))} differ)",
                             hint="set train.resume=false to start over, or use a new run directory")
    directory.mkdir(parents=True, exist_ok=True)
    signature_path.write_text(json.dumps(signature, indent=1) + "\n")

    with strategy.scope():
        rows = tf.Variable(vocab.vectors[:k], name="rows")
        pretrained = tf.Variable(vocab.vectors, trainable=False, name="pretrained")
        anchored = tf.constant(vocab.anchored.astype(np.float32))
        anchor_values = tf.constant(vocab.anchor_values())  # trainable x dim: the pretrained rows of shifted tokens
        variables = [rows]
        if options.context == "mapped" and vocab.context_map is None:
            log.warning("train.context=mapped: induction fitted no map (induce.method is not auto or "
                        "alacarte, or the corpus was too small); the frozen rows are the contexts")
        source = vocab.context_vectors(options.context)
        contexts: tf.Variable = pretrained
        if options.context == "learned":
            contexts = tf.Variable(source, name="contexts")
            variables.append(contexts)
        elif source is not vocab.vectors:  # mapped, or probes seen as contexts with their true vectors
            contexts = tf.Variable(source, trainable=False, name="context_rows")
        if options.objective == "glove":
            row_bias = tf.Variable(tf.zeros([k]), name="row_bias")
            context_bias = tf.Variable(tf.zeros([len(vocab.tokens)]), name="context_bias")
            variables += [row_bias, context_bias]
        optimizer = make_optimizer(options, inputs.planned_steps)
        optimizer.build(variables)
        best_rows = tf.Variable(vocab.vectors[:k], trainable=False, name="best_rows")
    # the loop's own state: plain host variables, not replicated
    state = {name: tf.Variable(0, dtype=tf.int64, trainable=False, name=name)
             for name in ("step", "epoch", "chunk", "batch", "stale")}
    best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_loss")
    unigram = tf.constant(unigram_table(vocab.counts))
    checkpoint = tf.train.Checkpoint(optimizer=optimizer, best_rows=best_rows, best_loss=best_loss,
                                     **{v.name.split(":")[0]: v for v in variables}, **state)
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoints), max_to_keep=options.keep_checkpoints,
                                         step_counter=state["step"])
    resumed = options.resume and manager.latest_checkpoint is not None
    if resumed:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        log.info("resuming from %s (step %d)", manager.latest_checkpoint, int(state["step"]))

    scale = 1.0 / options.batch_size
    seed_tensor = tf.constant(seed, dtype=tf.int64)

    def replica_sgns(step: tf.Tensor, centres: tf.Tensor, context_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # A window's centre is gathered once for all its pairs; the negatives are one pool per step,
        # shared by its pairs, each pair weighing them as `negatives` draws: the SGNS loss in expectation.
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
        draw = tf.random.stateless_uniform([NEGATIVE_POOL], tf.stack([seed_tensor, step * 1024 + replica]),
                                           maxval=tf.size(unigram, out_type=tf.int32), dtype=tf.int32)
        mask = tf.cast(context_ids >= 0, tf.float32)
        pairs = tf.reduce_sum(mask, axis=1)
        with tf.GradientTape() as tape:
            w = tf.gather(rows, centres)
            c = tf.gather(contexts, tf.maximum(context_ids, 0))
            n = tf.gather(contexts, tf.gather(unigram, draw))
            per_window = window_sgns_loss(w, c, mask, n, float(options.negatives))
            anchor = pairs * anchor_penalty(w, tf.gather(anchor_values, centres), tf.gather(anchored, centres),
                                            options.anchor_mu)
            loss = tf.reduce_sum(per_window + anchor) * scale
        gradients = map(dense_rows if options.compiled else sum_duplicates, tape.gradient(loss, variables))
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return tf.reduce_sum(per_window), tf.reduce_sum(pairs)

    def replica_glove(step: tf.Tensor, centres: tf.Tensor, context_ids: tf.Tensor, log_count: tf.Tensor,
                      weight: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        del step
        with tf.GradientTape() as tape:
            w = tf.gather(rows, centres)
            per_cell = glove_loss(w, tf.gather(contexts, context_ids), tf.gather(row_bias, centres),
                                  tf.gather(context_bias, context_ids), log_count, weight)
            anchor = anchor_penalty(w, tf.gather(anchor_values, centres), tf.gather(anchored, centres),
                                    options.anchor_mu)
            loss = tf.reduce_sum(per_cell + anchor) * scale
        optimizer.apply_gradients(zip(map(sum_duplicates, tape.gradient(loss, variables)), variables, strict=True))
        return tf.reduce_sum(per_cell), tf.cast(tf.size(centres), tf.float32)

    replica_step = replica_glove if options.objective == "glove" else replica_sgns
    if options.compiled:  # one compiled shape: batches are padded to batch_size (see generate)
        replica_step = tf.function(replica_step, jit_compile=True)

    def train_step_body(step: tf.Tensor, batch: tuple[tf.Tensor, ...]) -> tuple[tf.Tensor, tf.Tensor]:
        total, count = strategy.run(replica_step, args=(step, *batch))
        sum_ = tf.distribute.ReduceOp.SUM
        return strategy.reduce(sum_, total, axis=None), strategy.reduce(sum_, count, axis=None)

    def heldout_loss() -> float | None:
        if not len(inputs.heldout[0]):
            return None
        total = 0.0
        for start in range(0, len(inputs.heldout[0]), HELDOUT_SLICE):
            part = [tf.constant(a[start: start + HELDOUT_SLICE]) for a in inputs.heldout]
            total += float(_heldout_sum(part))
        return total / len(inputs.heldout[0])

    @tf.function(reduce_retracing=True)
    def _heldout_sum(part: list[tf.Tensor]) -> tf.Tensor:
        w = tf.gather(rows, part[0])
        if options.objective == "glove":
            return tf.reduce_sum(glove_loss(w, tf.gather(contexts, part[1]), tf.gather(row_bias, part[0]),
                                            tf.gather(context_bias, part[1]), part[2], part[3]))
        return tf.reduce_sum(sgns_loss(w, tf.gather(contexts, part[1]), tf.gather(contexts, part[2])))

    frozen_start = vocab.vectors[k:]

    def frozen_max_abs_diff() -> float:
        """The largest change of any frozen row training reads (the rows are copies gathered once: 0.0)."""
        now = pretrained.numpy()[k:]
        return float(np.abs(now - frozen_start).max()) if len(now) else 0.0

    has_heldout = options.heldout > 0 and len(inputs.heldout[0]) > 0
    probes = vocab.probe_rows
    use_probes = options.monitor == "probes" and vocab.probes > 0 and vocab.probe_truth is not None
    truth = tf.math.l2_normalize(tf.constant(vocab.probe_truth if use_probes else np.zeros((0, vocab.vectors.shape[1]),
                                                                                            np.float32)), axis=1)

    def probe_cosine() -> float:
        guess = tf.math.l2_normalize(rows[probes.start: probes.stop], axis=1)
        return float(tf.reduce_mean(tf.reduce_sum(guess * truth, axis=1)))

    def evaluation() -> tuple[float, dict[str, float]]:
        """The monitored value (lower is better) and what to log."""
        logged: dict[str, float] = {}
        if has_heldout:
            logged["train/heldout_loss"] = float(heldout_loss() or 0.0)
        if use_probes:
            logged["train/probe_cosine"] = probe_cosine()
            return -logged["train/probe_cosine"], logged
        return logged["train/heldout_loss"], logged

    evaluate = has_heldout or use_probes
    if options.monitor == "probes" and not use_probes:
        log.info("train.monitor=probes: no probes (induce.selftest_size=0?); the held-out loss is monitored")
    metrics: dict[str, float] = {
        "train/trainable_rows": float(k), "train/planned_steps": float(inputs.planned_steps),
        "train/resumed": float(resumed), "train/replicas": float(strategy.num_replicas_in_sync)}
    # the last evaluation and the best one's figures (None after a resume: the best was before it), so that
    # the end does not evaluate again the rows an evaluation in the loop has just scored
    last: tuple[int, float, dict[str, float]] | None = None
    best_logged: dict[str, float] | None = None
    if evaluate and not resumed:
        initial, logged = evaluation()
        best_loss.assign(initial)
        last, best_logged = (int(state["step"]), initial, logged), logged
        metrics.update({f"{name}_initial": value for name, value in logged.items()})
        if on_metrics:
            on_metrics(logged, 0)

    positions: collections.deque[Position] = collections.deque()
    start = Position(int(state["epoch"]), int(state["chunk"]), int(state["batch"]))

    def generate() -> Iterator[tuple[npt.NDArray[Any], ...]]:
        for arrays, after in inputs.batches(start):
            positions.append(after)
            yield _padded(arrays, options.batch_size) if options.compiled else arrays

    def save(step: int, after: Position) -> None:
        state["step"].assign(step)
        for name in ("epoch", "chunk", "batch"):
            state[name].assign(getattr(after, name))
        manager.save(checkpoint_number=step)

    dataset = tf.data.Dataset.from_generator(generate, output_signature=inputs.signature).prefetch(PREFETCH_BATCHES)
    dataset_options = tf.data.Options()
    # every worker reads the same stream and takes its part of each global batch
    dataset_options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # tf.data's autotuning thread can hold up the deletion of this iterator after an early stop for as
    # long as it last chose to sleep, which grows with the iterator's age (2.0-2.5 s, in 4 of 8 runs on
    # the kit); a fixed buffer keeps the generator ahead of the step just as well
    dataset_options.autotune.enabled = False
    dataset = dataset.with_options(dataset_options)
    # one device: the batches go to strategy.run as they are (a distributed dataset's multi-device
    # iterator also holds up its deletion, autotuning or not); on a GPU each step copies its batch there
    batches = dataset if isinstance(strategy, tf.distribute.OneDeviceStrategy) else \
        strategy.experimental_distribute_dataset(dataset)
    # traced once for every batch size (a chunk's last batch is smaller): the signature is the dataset's
    train_step = tf.function(train_step_body, input_signature=[tf.TensorSpec([], tf.int64), batches.element_spec])
    step = int(state["step"])
    per_epoch = inputs.planned_steps / (options.epochs * options.evals_per_epoch)
    eval_interval = options.eval_every or max(1, round(per_epoch))
    after = start
    stopped_early = False
    last_saved = step if resumed else -1
    window_loss, window_items, window_started = 0.0, 0.0, time.perf_counter()
    pairs_total = 0.0
    started = time.perf_counter()
    with tqdm(total=inputs.planned_steps, initial=step, desc=f"train {options.objective}", unit="step",
              disable=not progress or None, leave=False) as bar:
        for batch in batches:
            total, count = train_step(tf.constant(step, dtype=tf.int64), batch)
            step += 1
            after = positions.popleft()
            loss_sum, items = float(total), float(count)
            loss = loss_sum / max(items, 1.0)
            if not math.isfinite(loss):
                raise TrainingDivergedError(step, loss, manager.latest_checkpoint)
            window_loss += loss_sum
            window_items += items
            pairs_total += items
            bar.update(1)
            step_metrics: dict[str, float] = {}
            if evaluate and step % eval_interval == 0:
                held, logged = evaluation()
                last = (step, held, logged)
                step_metrics.update(logged)
                if held < float(best_loss):
                    best_loss.assign(held)
                    best_rows.assign(rows.read_value())
                    best_logged = logged
                    state["stale"].assign(0)
                else:
                    state["stale"].assign_add(1)
                    stopped_early = bool(options.patience) and int(state["stale"]) >= options.patience
            if step % options.log_every == 0:
                elapsed = time.perf_counter() - window_started
                step_metrics.update({
                    "train/loss": window_loss / max(window_items, 1.0),
                    "train/lr": float(optimizer.learning_rate),
                    "train/pairs_per_second": window_items / max(elapsed, 1e-9),
                    "train/frozen_max_abs_diff": frozen_max_abs_diff(),
                })
                bar.set_postfix(loss=f"{step_metrics['train/loss']:.4f}",
                                pairs_s=f"{step_metrics['train/pairs_per_second']:,.0f}")
                window_loss, window_items, window_started = 0.0, 0.0, time.perf_counter()
            if step_metrics and on_metrics:
                on_metrics(step_metrics, step)
            if step % options.checkpoint_every == 0 or stopped_early:
                save(step, after)
                last_saved = step
            if stopped_early:
                break
    if last_saved != step:
        save(step, after)
    log.debug("train_step traced %d times, _heldout_sum %d times", train_step.experimental_get_tracing_count(),
              _heldout_sum.experimental_get_tracing_count())
    if evaluate:
        _, held, logged = last if last is not None and last[0] == step else (step, *evaluation())
        metrics.update({f"{name}_final": value for name, value in logged.items()})
        if held < float(best_loss):  # the last rows are the best: their evaluation is the best one
            best_loss.assign(held)
            best_rows.assign(rows.read_value())
        else:  # the rows of an earlier evaluation (the start, if training never beat it)
            rows.assign(best_rows.read_value())
            logged = best_logged if best_logged is not None else evaluation()[1]
        metrics.update({f"{name}_best": value for name, value in logged.items()})
        result = best_rows.numpy()
    else:
        result = rows.numpy()
    kept = np.r_[0:probes.start, probes.stop:k]  # probes judged training; they are not part of the result
    seconds = time.perf_counter() - started
    metrics.update({"train/steps": float(step), "train/stopped_early": float(stopped_early),
                    "train/seconds": seconds, "train/pairs_per_second": pairs_total / max(seconds, 1e-9),
                    "train/frozen_max_abs_diff": frozen_max_abs_diff()})
    if use_probes:
        metrics["train/probes"] = float(vocab.probes)
    tokens = tuple(vocab.tokens[i] for i in kept)
    return TrainedRows(tokens, result[kept].astype(np.float32), metrics, manager.latest_checkpoint)
