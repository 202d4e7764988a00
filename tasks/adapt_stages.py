"""The adapt job's stages wired together: options -> load, count, choose, induce, check, export -> tracker."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from pipeline.adapted import AdaptedTable, append_induced
from pipeline.atomic import write_text_atomic
from pipeline.cooccurrence import ContextCounts, context_counts
from pipeline.corpus import Corpus, files_corpus, python_docs_corpus, reading, store_as_tfds, tfds_corpus
from pipeline.counts import TokenCounts, count_tokens
from pipeline.device import select_device
from pipeline.errors import InputError, TrainingDivergedError
from pipeline.export import build_manifest, export_table, write_manifest
from pipeline.formats import load_table
from pipeline.formats.cache import default_cache_dir
from pipeline.induce import InducedVectors, fitting_tokens, induce_vectors
from pipeline.integrity import check_integrity
from pipeline.neighbours import nearest
from pipeline.selftest import SelfTest, self_test, selftest_pool
from pipeline.shift import general_probabilities, score_shift, select_shifted, shift_candidates
from pipeline.table import EmbeddingTable
from pipeline.tokenize import Tokenizer, warn_tokenizer_table_mismatch
from pipeline.train.data import extract_windows, training_vocab
from pipeline.train.loop import fine_tune, make_strategy
from pipeline.train.rows import TrainedRows
from pipeline.vocab import DomainVocab, select_new_tokens
from tasks.config import AdaptOptions, FilesCorpusConfig, TfdsCorpusConfig
from tasks.tracking import NullTracker

log = logging.getLogger(__name__)


@dataclass
class AdaptResult:
    """What a run produced.

    Attributes:
        adapted: the adapted table.
        metrics: final metrics, flat (``stage/name``).
        manifest: what ``manifest.json`` holds.
        exports: format -> exported file.
        neighbours: shown new token -> its nearest rows with cosines.
    """

    adapted: AdaptedTable
    metrics: dict[str, float]
    manifest: dict[str, Any]
    exports: dict[str, Path]
    neighbours: dict[str, list[tuple[str, float]]] = field(default_factory=dict)


def open_corpus(options: AdaptOptions) -> Corpus:
    """The configured corpus source (local files stored once as TFDS record shards with ``corpus.store``)."""
    spec = options.corpus
    if isinstance(spec, FilesCorpusConfig):
        corpus = files_corpus(spec.paths, unit=spec.unit, field=spec.field)
        if spec.store:
            corpus = store_as_tfds(corpus, Path(spec.cache_dir or default_cache_dir()) / "tfds")
        return corpus
    if isinstance(spec, TfdsCorpusConfig):
        return tfds_corpus(spec.name, split=spec.split, field=spec.field, data_dir=spec.data_dir,
                           download=spec.download)
    return python_docs_corpus(spec.packages, spec.cache_dir)


def config_sha256(config: dict[str, Any]) -> str:
    """A stable hash of the resolved config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def adapt(options: AdaptOptions, out_dir: Path, tracker: NullTracker | None = None,
          config_hash: str = "") -> AdaptResult:
    """Run every stage; write ``metrics.json``, ``manifest.json`` and ``export/`` under ``out_dir``.

    Stage results are logged to ``tracker`` as each stage returns.

    Raises:
        InputError: bad input (table, corpus); nothing is exported.
        RuntimeError: the integrity check failed; nothing is exported.
    """
    tracker = tracker or NullTracker()
    # multi_worker must exist before TensorFlow runs any op; the others need the device first
    strategy = make_strategy("multi_worker", "") if options.train.strategy == "multi_worker" else None
    tf.random.set_seed(options.seed)
    device = select_device(options.device)
    if strategy is None:
        strategy = make_strategy(options.train.strategy, device)
    metrics: dict[str, float] = {}

    def record(stage_metrics: dict[str, float]) -> None:
        metrics.update(stage_metrics)
        tracker.log_metrics(stage_metrics)

    started = time.perf_counter()
    tokenizer = Tokenizer(options.tokenizer)  # checks corpus.tokenizer.pattern before any long work
    corpus = open_corpus(options)  # before the table: a bad corpus path fails before a long load
    tracker.set_tags({"corpus_fingerprint": corpus.fingerprint})
    base = load_table(options.embedding_path, options.load)
    record({"load/rows": len(base), "load/dim": base.dim, "load/seconds": time.perf_counter() - started})
    tracker.set_tags({"base_checksum": base.checksum})

    counts, vocab, contexts = choose_stage(options, corpus, tokenizer, base, record)
    induced, checked = induce_stage(options, base, counts, vocab, contexts, record)
    report = vocab_report(vocab, induced)
    write_vocab_report(out_dir / "vocab.tsv", report)
    tracker.log_artifact(out_dir / "vocab.tsv")
    tracker.log_table(report, "vocab.json")

    trained = None
    if options.train.objective != "none":
        probes = checked.held_out if checked is not None and options.train.monitor == "probes" else None
        trained = train_stage(options, corpus, tokenizer, base, vocab, induced, counts, out_dir, probes=probes,
                              strategy=strategy, tracker=tracker, record=record)
    adapted = append_induced(base, induced, trained)
    integrity = check_integrity(base, adapted)
    record(integrity.metrics())
    if options.evaluate.integrity and not integrity.ok:
        raise RuntimeError(f"integrity check failed: {integrity}")
    record({"vocab/coverage_after": vocab.coverage_with(frozenset(adapted.appended), counts),
            "adapt/rows_before": len(base), "adapt/rows_after": len(adapted.table)})

    shown = list(adapted.appended[: options.evaluate.show])
    with tf.device(device):
        neighbours = nearest(adapted.table, shown, k=options.evaluate.neighbours)
    write_neighbours(out_dir / "neighbours.tsv", neighbours)
    tracker.log_artifact(out_dir / "neighbours.tsv")

    exports = export_table(adapted, out_dir / "export", options.export_formats)
    manifest = build_manifest(adapted=adapted, base_path=absolute(options.embedding_path), base_checksum=base.checksum,
                              corpus_fingerprint=corpus.fingerprint, config_hash=config_hash,
                              extra={"shifted": [{"token": s.token, "index": base.index_of(s.token),
                                                  "score": s.score} for s in vocab.shifted],
                                     "corpus": {"source": corpus.name, "sources": list(corpus.sources)},
                                     "device": device})
    write_manifest(out_dir / "manifest.json", manifest)
    metrics["adapt/seconds"] = time.perf_counter() - started
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    tracker.log_metrics({"adapt/seconds": metrics["adapt/seconds"]})
    for path in (out_dir / "manifest.json", out_dir / "metrics.json"):
        tracker.log_artifact(path)
    tracker.log_artifacts(out_dir / "export", "export")
    return AdaptResult(adapted, metrics, manifest, exports, neighbours)


def choose_stage(options: AdaptOptions, corpus: Corpus, tokenizer: Tokenizer, base: EmbeddingTable,
                 record: Callable[[dict[str, float]], None]) -> tuple[TokenCounts, DomainVocab, ContextCounts]:
    """Count the corpus, choose new and shifted tokens, and count contexts in one pass for every later use.

    Raises:
        InputError: the corpus has no tokens, or none of them is in the table.
    """
    unproducible = warn_tokenizer_table_mismatch(options.tokenizer, base.tokens)
    if unproducible is not None:
        record({"corpus/tokenizer_unproducible_share": unproducible})
    with reading(corpus):
        counts = count_tokens(corpus, tokenizer, progress=options.progress)
    if counts.total == 0:
        raise InputError(", ".join(corpus.sources[:3]), "the corpus has no tokens",
                         hint="check corpus.paths and corpus.tokenizer")
    vocab = select_new_tokens(counts, base, options.vocab)
    if vocab.covered_tokens == 0:
        raise InputError(", ".join(corpus.sources[:3]), f"no corpus token is in the table "
                         f"({len(counts.counts):,} distinct tokens, e.g. {', '.join(list(counts.counts)[:3])})",
                         hint="check corpus.tokenizer.lowercase against the table's casing, and that the corpus "
                              "is in the table's language")
    general = general_probabilities(base, options.vocab.general_frequencies) if options.vocab.shift_top else None
    candidates = shift_candidates(counts, base, options.vocab.shift_min_count, general,
                                  options.vocab.shift_skip_common) if general is not None else ()
    fitting = fitting_tokens(counts, base, options.induce)
    pool = selftest_pool(counts, base, options.induce)
    targets = tuple(dict.fromkeys(vocab.new_tokens + fitting + pool + candidates))
    with reading(corpus):  # one pass serves the new tokens, the map's fitting tokens and the shift candidates
        contexts = context_counts(corpus, tokenizer, base, targets, window=options.induce.window,
                                  progress=options.progress)
    if candidates and general is not None:
        scored = score_shift(candidates, contexts, base, counts, general)
        vocab = dataclasses.replace(vocab, shifted=select_shifted(scored, options.vocab.shift_top,
                                                                  options.vocab.shift_threshold))
    if counts.replaced:
        log.warning("%s: %d undecodable byte sequences were replaced by U+FFFD", ", ".join(corpus.sources[:3]),
                    counts.replaced)
    record({"corpus/tokens": counts.total, "corpus/documents": counts.documents,
            "corpus/replaced_characters": counts.replaced,
            "corpus/distinct_tokens": len(counts.counts), "vocab/new_tokens": len(vocab.new_tokens),
            "vocab/candidates": vocab.candidates, "vocab/shift_candidates": len(candidates),
            "vocab/shifted_tokens": len(vocab.shifted), "vocab/frozen_rows": vocab.frozen_rows,
            "vocab/coverage_before": vocab.coverage_before})
    return counts, vocab, contexts


def induce_stage(options: AdaptOptions, base: EmbeddingTable, counts: TokenCounts, vocab: DomainVocab,
                 contexts: ContextCounts, record: Callable[[dict[str, float]], None]) -> tuple[
                     InducedVectors, SelfTest | None]:
    """Vectors for the new tokens, and the self-test of the method on held-out table tokens."""
    induce_started = time.perf_counter()
    induced = induce_vectors(contexts, base, counts, vocab.new_tokens, options.induce)
    by_method = {f"induce/method_{m.replace('+', '_')}": float(induced.methods.count(m))  # MLflow refuses '+'
                 for m in sorted(set(induced.methods))}
    record({"induce/placed": len(induced.tokens), "induce/unplaced": len(induced.unplaced),
            "induce/seconds": time.perf_counter() - induce_started, **by_method})
    checked = self_test(contexts, base, counts, options.induce) if options.induce.selftest_size else None
    if checked is not None:
        record(checked.metrics())
    return induced, checked


def train_stage(options: AdaptOptions, corpus: Corpus, tokenizer: Tokenizer, base: EmbeddingTable,
                vocab: DomainVocab, induced: InducedVectors, counts: TokenCounts, out_dir: Path, *,
                probes: InducedVectors | None = None, strategy: tf.distribute.Strategy, tracker: NullTracker,
                record: Callable[[dict[str, float]], None]) -> TrainedRows | None:
    """Fine-tune the new and shifted rows under ``<out_dir>/train``; None when there is nothing to train.

    Raises:
        TrainingDivergedError: the loss stopped being finite (``train/diverged_step`` is logged first).
    """
    shifted = [s.token for s in vocab.shifted]
    if not induced.tokens and not shifted:
        log.warning("train: nothing to train (no new or shifted rows were chosen); fine-tuning skipped")
        record({"train/trainable_rows": 0.0})
        return None
    held_out: tuple[tuple[str, ...], npt.NDArray[np.float32]] = ((), np.zeros((0, base.dim), np.float32))
    if probes is not None and options.train.probes and probes.tokens:
        # evenly spaced through the self-test's tokens (most frequent first): every frequency, not the top
        pick = np.unique(np.linspace(0, len(probes.tokens) - 1, min(options.train.probes, len(probes.tokens)))
                         .round().astype(np.int64))
        held_out = (tuple(probes.tokens[i] for i in pick), probes.vectors[pick])
    rows = training_vocab(base, induced.tokens, induced.vectors, shifted, counts, induced.context_map, held_out)
    directory = out_dir / "train"
    with reading(corpus):
        windows = extract_windows(corpus, tokenizer, rows, window=options.train.window,
                                  heldout=options.train.heldout, directory=directory, progress=options.progress)
    try:
        trained = fine_tune(rows, windows, options.train, directory=directory, seed=options.seed, strategy=strategy,
                            on_metrics=tracker.log_metrics, progress=options.progress)
    except TrainingDivergedError as err:
        record({"train/diverged_step": float(err.step)})
        raise
    record({**trained.metrics, "train/windows": float(len(windows.train)),
            "train/heldout_windows": float(len(windows.heldout))})
    if trained.checkpoint:  # the latest checkpoint: its index, its data shards, and the manager's state file
        for path in sorted(Path(trained.checkpoint).parent.glob(Path(trained.checkpoint).name + ".*")):
            tracker.log_artifact(path, "checkpoint")
    return trained


def vocab_report(vocab: DomainVocab, induced: InducedVectors) -> dict[str, list[Any]]:
    """One row per chosen token: count, reason, shift score and its parts, the placing method, contexts."""
    placed = dict(zip(induced.tokens, zip(induced.methods, induced.contexts, strict=True), strict=True))
    columns: dict[str, list[Any]] = {k: [] for k in ("token", "count", "reason", "score", "distance", "lift",
                                                      "method", "contexts")}

    def add(**row: Any) -> None:
        for key, value in row.items():
            columns[key].append(value)

    for token, n in zip(vocab.new_tokens, vocab.new_counts, strict=True):
        method, contexts = placed.get(token, ("unplaced", 0))
        add(token=token, count=n, reason="new", score=None, distance=None, lift=None, method=method,
            contexts=contexts)
    for s in vocab.shifted:
        add(token=s.token, count=s.count, reason="shifted", score=round(s.score, 4), distance=round(s.distance, 4),
            lift=round(s.lift, 4), method="pretrained", contexts=None)
    return columns


def write_vocab_report(path: Path, report: dict[str, list[Any]]) -> None:
    """The report as TSV (empty cells for values that do not apply)."""
    lines = ["\t".join(report)]
    for row in zip(*report.values(), strict=True):
        lines.append("\t".join("" if v is None else str(v) for v in row))
    write_text_atomic(path, "\n".join(lines) + "\n")


def absolute(path: str) -> str:
    """A table path as the manifest records it: absolute, so it can be traced from anywhere."""
    return path if path.startswith("pkg://") else str(Path(path).expanduser().resolve())


def write_neighbours(path: Path, neighbours: dict[str, list[tuple[str, float]]]) -> None:
    """One row per (token, rank): the neighbour and its cosine."""
    lines = ["token\trank\tneighbour\tcosine"]
    for token, rows in neighbours.items():
        lines.extend(f"{token}\t{rank}\t{other}\t{score:.4f}" for rank, (other, score) in enumerate(rows, 1))
    write_text_atomic(path, "\n".join(lines) + "\n")


def summary(result: AdaptResult, out_dir: Path, run_id: str | None, uri: str | None) -> str:
    """The few lines a person reads at the end of a run."""
    m = result.metrics
    lines = [] if m["vocab/new_tokens"] or m["vocab/shifted_tokens"] else [
        "nothing to adapt: no corpus token is both frequent enough and missing from the table, and no table "
        "token is used differently enough (see vocab.min_count, vocab.shift_threshold)"]
    lines += [
        f"rows: {int(m['adapt/rows_before']):,} -> {int(m['adapt/rows_after']):,} "
        f"({int(m['vocab/new_tokens']):,} new tokens chosen, {int(m['induce/placed']):,} placed; "
        f"{int(m['vocab/shifted_tokens']):,} shifted tokens chosen; "
        f"frozen rows unchanged: max |diff| = {m['integrity/frozen_max_abs_diff']})",
        f"coverage of corpus tokens: {m['vocab/coverage_before']:.1%} -> {m['vocab/coverage_after']:.1%}",
    ]
    if m.get("train/steps"):
        lines.append(f"fine-tuning: {int(m['train/trainable_rows']):,} rows, {int(m['train/steps']):,} steps"
                     + (f", held-out loss {m['train/heldout_loss_initial']:.4f} -> {m['train/heldout_loss_best']:.4f}"
                        if "train/heldout_loss_best" in m and "train/heldout_loss_initial" in m else "")
                     + (" (stopped early)" if m.get("train/stopped_early") else ""))
    for token, rows in result.neighbours.items():
        lines.append(f"  {token:>16}: " + ", ".join(other for other, _ in rows[:6]))
    lines.append(f"outputs: {out_dir}")
    if run_id:
        lines.append(f"mlflow run {run_id} at {uri} (mlflow ui --backend-store-uri {uri})")
    return "\n".join(lines)


