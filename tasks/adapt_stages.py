"""The adapt job's stages wired together: options -> load, count, choose, induce, check, export -> tracker."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from pipeline.adapted import AdaptedTable, append_induced
from pipeline.atomic import write_text_atomic
from pipeline.collector import existing_objects_frozen
from pipeline.cooccurrence import ContextCounts, context_counts
from pipeline.corpus import Corpus, reading
from pipeline.counts import TokenCounts, count_tokens
from pipeline.device import select_device
from pipeline.errors import InputError, IntegrityError, TrainingDivergedError
from pipeline.evaluate.suite import read_sets
from pipeline.export import build_manifest, export_table, write_manifest
from pipeline.formats import load_table
from pipeline.induce import InducedVectors, fit_table_subword, fitting_tokens, place_shifted
from pipeline.integrity import check_integrity
from pipeline.plots import loss_curves, norm_histogram, pca_map
from pipeline.projector import write_projector
from pipeline.report import RunReport, collected_warnings
from pipeline.selftest import SelfTest, induce_and_test, selftest_pool
from pipeline.shift import general_probabilities, score_shift, select_shifted, shift_candidates
from pipeline.table import EmbeddingTable, row_norms
from pipeline.tokenize import Tokenizer, warn_tokenizer_table_mismatch
from pipeline.train.data import extract_windows, training_vocab
from pipeline.train.loop import fine_tune, make_strategy
from pipeline.train.rows import TrainedRows
from pipeline.vocab import DomainVocab, select_new_tokens
from tasks.config import AdaptOptions
from tasks.evaluation import (
    KindNeighbours,
    evaluation_metrics,
    neighbour_columns,
    shown_neighbours,
    summary_lines,
    write_columns,
)
from tasks.registry import register_table
from tasks.sources import open_corpus
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
        neighbours: shown new and shifted token -> (kind, nearest rows before fine-tuning, after), with cosines.
        registered: ``(model name, version)`` in the MLflow registry, when ``tracking.register_as`` is set.
    """

    adapted: AdaptedTable
    metrics: dict[str, float]
    manifest: dict[str, Any]
    exports: dict[str, Path]
    neighbours: KindNeighbours = field(default_factory=dict)
    registered: tuple[str, str] | None = None


def config_sha256(config: dict[str, Any]) -> str:
    """A stable hash of the resolved config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def adapt(options: AdaptOptions, out_dir: Path, tracker: NullTracker | None = None,
          config_hash: str = "", version_tags: dict[str, str] | None = None, *,
          corpus: Corpus | None = None) -> AdaptResult:
    """Run every stage; write ``metrics.json``, ``manifest.json``, ``report.md`` and ``export/`` under ``out_dir``.

    Stage results are logged to ``tracker`` as each stage returns; the warnings of the run go into the report.
    ``version_tags`` go on the registered model version (``tracking.register_as``). ``corpus``, when given,
    is read instead of the one ``options.corpus`` configures. The garbage collector leaves the objects
    that exist before the run alone until it ends (:func:`~pipeline.collector.existing_objects_frozen`).

    Raises:
        InputError: bad input (table, corpus, evaluation file); nothing is exported.
        IntegrityError: the integrity check failed; nothing is exported.
    """
    with collected_warnings("pipeline", "tasks") as warned, existing_objects_frozen():
        return _adapt(options, out_dir, tracker or NullTracker(), config_hash, warned, version_tags or {}, corpus)


def _adapt(options: AdaptOptions, out_dir: Path, tracker: NullTracker, config_hash: str,
           warned: list[str], version_tags: dict[str, str], given: Corpus | None = None) -> AdaptResult:
    # multi_worker must exist before TensorFlow runs any op; the others need the device first
    strategy = make_strategy("multi_worker", "") if options.train.strategy == "multi_worker" else None
    tf.random.set_seed(options.seed)
    device = select_device(options.device)
    if strategy is None:
        strategy = make_strategy(options.train.strategy, device)
    metrics: dict[str, float] = {}
    history: dict[str, list[tuple[int, float]]] = defaultdict(list)

    def record(stage_metrics: dict[str, float]) -> None:
        metrics.update(stage_metrics)
        tracker.log_metrics(stage_metrics)

    def record_step(step_metrics: dict[str, float], step: int) -> None:
        tracker.log_metrics(step_metrics, step)
        for key, value in step_metrics.items():
            history[key].append((step, value))

    started = time.perf_counter()
    tokenizer = Tokenizer(options.tokenizer)  # checks corpus.tokenizer.pattern before any long work
    sets = read_sets(options.evaluate)  # a missing or malformed evaluation file fails now, not after training
    corpus = given or open_corpus(options.corpus)  # before the table: a bad corpus path fails before a long load
    tracker.set_tags({"corpus_fingerprint": corpus.fingerprint})
    base = load_table(options.embedding_path, options.load)
    record({"load/rows": len(base), "load/dim": base.dim, "load/seconds": time.perf_counter() - started})
    tracker.set_tags({"base_checksum": base.checksum})

    counts, vocab, contexts = choose_stage(options, corpus, tokenizer, base, record)
    induced, checked, shifted_start = induce_stage(options, base, counts, vocab, contexts, record)
    # the n-gram vectors (over 1 GiB for a 3M-row table) are held on only when the registered model serves them
    serving = options.tracking.register_as and options.tracking.oov == "subword"
    subword = induced.subword if serving else None
    induced = dataclasses.replace(induced, subword=None)
    report = vocab_report(vocab, induced, shifted_start)
    write_columns(out_dir / "vocab.tsv", report)
    tracker.log_artifact(out_dir / "vocab.tsv")
    tracker.log_table(report, "vocab.json")

    trained = None
    if options.train.objective != "none":
        probes = checked.held_out if checked is not None and options.train.monitor == "probes" else None
        trained = train_stage(options, corpus, tokenizer, base, vocab, induced, counts, out_dir, probes=probes,
                              shifted_start=shifted_start, strategy=strategy, tracker=tracker, record=record,
                              on_step=record_step)
    adapted = append_induced(base, induced, trained, shifted_start)
    vectors_seconds = time.perf_counter() - started  # the adapted table in memory: what follows checks and reports it
    integrity = check_integrity(base, adapted)
    record(integrity.metrics())
    if options.evaluate.integrity and not integrity.ok:
        raise IntegrityError(options.embedding_path, integrity.problems())
    shifted = [s.token for s in vocab.shifted]
    record({"vocab/coverage_after": vocab.coverage_with(frozenset(adapted.appended), counts),
            "adapt/rows_before": len(base), "adapt/rows_after": len(adapted.table),
            "adapt/vectors_seconds": vectors_seconds})
    evaluated, comparison = evaluation_metrics(base, adapted.table, sets, options.evaluate, seed=options.seed,
                                               touching=frozenset(adapted.appended) | frozenset(shifted),
                                               device=device)
    record(evaluated)

    shown = [(t, "new") for t in adapted.appended[: options.evaluate.show]] + \
        [(t, "shifted") for t in shifted[: options.evaluate.show]]
    where = {t: i for i, t in enumerate(induced.tokens)}
    before = np.stack([induced.vectors[where[t]] if kind == "new" else base.matrix[base.index_of(t)]
                       for t, kind in shown]) if shown else np.zeros((0, base.dim), np.float32)
    neighbours = shown_neighbours(adapted.table, shown, before, k=options.evaluate.neighbours, device=device)
    columns = neighbour_columns(neighbours)
    write_columns(out_dir / "neighbours.tsv", columns)
    tracker.log_artifact(out_dir / "neighbours.tsv")
    tracker.log_table(columns, "neighbours.json")

    # the plots (matplotlib, mostly Python) are drawn beside the export (TensorFlow's formatting, outside the GIL)
    with ThreadPoolExecutor(1, thread_name_prefix="plots") as pool:
        drawn = pool.submit(draw_plots, out_dir / "plots", adapted, induced, history, neighbours)
        exports = export_table(adapted, out_dir / "export", options.export.formats)
        if options.export.projector:
            write_projector(adapted.table, out_dir / "projector", new=adapted.appended, shifted=shifted,
                            max_rows=options.export.projector_rows)
            tracker.log_artifacts(out_dir / "projector", "projector")
        plots = drawn.result()
    for path, _ in plots:
        tracker.log_artifact(path, "plots")
    manifest = build_manifest(adapted=adapted, base_path=absolute(options.embedding_path), base_checksum=base.checksum,
                              corpus_fingerprint=corpus.fingerprint, config_hash=config_hash,
                              extra={"shifted": [{"token": s.token, "index": base.index_of(s.token),
                                                  "score": s.score} for s in vocab.shifted],
                                     "corpus": {"source": corpus.name, "sources": list(corpus.sources)},
                                     # how to load the base again (tasks.evaluate finds it through the manifest)
                                     "base_load": {k: v for k, v in dataclasses.asdict(options.load).items()
                                                   if k != "progress"},
                                     "device": device})
    write_manifest(out_dir / "manifest.json", manifest)
    registered = None
    if options.tracking.register_as and tracker.run_id and tracker.uri:
        if subword is None and options.tracking.oov == "subword":
            subword = fit_table_subword(base, options.induce)
        registered = register_table(uri=tracker.uri, run_id=tracker.run_id, name=options.tracking.register_as,
                                    table=adapted.table, manifest=manifest, subword=subword,
                                    oov=options.tracking.oov, work_dir=out_dir / "model", extra_tags=version_tags)
        shutil.rmtree(out_dir / "model", ignore_errors=True)  # the registry holds its own copy
    metrics["adapt/seconds"] = time.perf_counter() - started
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    tracker.log_metrics({"adapt/seconds": metrics["adapt/seconds"]})
    write_text_atomic(out_dir / "report.md", run_report(
        options, base, vocab, report, metrics, comparison, neighbours, plots, warned, exports,
        registered, out_dir).markdown())
    for path in (out_dir / "manifest.json", out_dir / "metrics.json", out_dir / "report.md"):
        tracker.log_artifact(path)
    tracker.log_artifacts(out_dir / "export", "export")
    return AdaptResult(adapted, metrics, manifest, exports, neighbours, registered)


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
        log.warning("%s: %d characters are U+FFFD: undecodable bytes replaced (or U+FFFD in the text already)",
                    ", ".join(corpus.sources[:3]), counts.replaced)
    record({"corpus/tokens": counts.total, "corpus/documents": counts.documents,
            "corpus/replaced_characters": counts.replaced,
            "corpus/distinct_tokens": len(counts.counts), "vocab/new_tokens": len(vocab.new_tokens),
            "vocab/candidates": vocab.candidates, "vocab/shift_candidates": len(candidates),
            "vocab/shifted_tokens": len(vocab.shifted), "vocab/frozen_rows": vocab.frozen_rows,
            "vocab/coverage_before": vocab.coverage_before})
    return counts, vocab, contexts


def induce_stage(options: AdaptOptions, base: EmbeddingTable, counts: TokenCounts, vocab: DomainVocab,
                 contexts: ContextCounts, record: Callable[[dict[str, float]], None]) -> tuple[
                     InducedVectors, SelfTest | None, InducedVectors]:
    """Vectors for the new tokens, the self-test of the method on held-out table tokens, and the
    shifted tokens' starting vectors (``induce/seconds`` covers all three)."""
    induce_started = time.perf_counter()
    induced, checked = induce_and_test(contexts, base, counts, vocab.new_tokens, options.induce)
    shifted = place_shifted(contexts, base, counts, [s.token for s in vocab.shifted], options.induce,
                            induced.context_map, fit_map=not induced.tokens)
    by_method = {f"induce/method_{m.replace('+', '_')}": float(induced.methods.count(m))  # MLflow refuses '+'
                 for m in sorted(set(induced.methods))}
    record({"induce/placed": len(induced.tokens), "induce/unplaced": len(induced.unplaced),
            "induce/shifted_moved": float(shifted.methods.count("pretrained+alacarte")),
            "induce/seconds": time.perf_counter() - induce_started, **by_method})
    if checked is not None:
        record(checked.metrics())
    return induced, checked, shifted


def train_stage(options: AdaptOptions, corpus: Corpus, tokenizer: Tokenizer, base: EmbeddingTable,
                vocab: DomainVocab, induced: InducedVectors, counts: TokenCounts, out_dir: Path, *,
                probes: InducedVectors | None = None, shifted_start: InducedVectors | None = None,
                strategy: tf.distribute.Strategy, tracker: NullTracker,
                record: Callable[[dict[str, float]], None],
                on_step: Callable[[dict[str, float], int], None] | None = None) -> TrainedRows | None:
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
    # place_shifted keeps the order of vocab.shifted: its vectors line up with `shifted`
    rows = training_vocab(base, induced.tokens, induced.vectors, shifted, counts, induced.context_map, held_out,
                          shifted_start.vectors if shifted_start is not None and shifted else None)
    directory = out_dir / "train"
    with reading(corpus):
        windows = extract_windows(corpus, tokenizer, rows, window=options.train.window,
                                  heldout=options.train.heldout, directory=directory, progress=options.progress)
    try:
        trained = fine_tune(rows, windows, options.train, directory=directory, seed=options.seed, strategy=strategy,
                            on_metrics=on_step or tracker.log_metrics, progress=options.progress)
    except TrainingDivergedError as err:
        record({"train/diverged_step": float(err.step)})
        raise
    record({**trained.metrics, "train/windows": float(len(windows.train)),
            "train/heldout_windows": float(len(windows.heldout))})
    if trained.checkpoint:  # the latest checkpoint: its index, its data shards, and the manager's state file
        for path in sorted(Path(trained.checkpoint).parent.glob(Path(trained.checkpoint).name + ".*")):
            tracker.log_artifact(path, "checkpoint")
    return trained


def vocab_report(vocab: DomainVocab, induced: InducedVectors,
                 shifted: InducedVectors | None = None) -> dict[str, list[Any]]:
    """One row per chosen token: count, reason, shift score and its parts, the placing method, contexts."""
    placed = dict(zip(induced.tokens, zip(induced.methods, induced.contexts, strict=True), strict=True))
    started: dict[str, tuple[str, int | None]] = dict(
        zip(shifted.tokens, zip(shifted.methods, shifted.contexts, strict=True), strict=True)) if shifted else {}
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
        start, around = started.get(s.token, ("pretrained", None))
        add(token=s.token, count=s.count, reason="shifted", score=round(s.score, 4), distance=round(s.distance, 4),
            lift=round(s.lift, 4), method=start, contexts=around)
    return columns


def absolute(path: str) -> str:
    """A table path as the manifest records it: absolute, so it can be traced from anywhere."""
    return path if path.startswith("pkg://") else str(Path(path).expanduser().resolve())


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
    lines += summary_lines(m)
    for token, (kind, _, nearest_now) in result.neighbours.items():
        lines.append(f"  {token:>16} ({kind}): " + ", ".join(other for other, _ in nearest_now[:6]))
    if result.registered:
        lines.append(f"registered: models:/{result.registered[0]}/{result.registered[1]}")
    lines.append(f"outputs: {out_dir} (report.md)")
    if run_id:
        lines.append(f"mlflow run {run_id} at {uri} (mlflow ui --backend-store-uri {uri})")
    return "\n".join(lines)




def draw_plots(directory: Path, adapted: AdaptedTable, induced: InducedVectors,
               history: dict[str, list[tuple[int, float]]], neighbours: KindNeighbours) -> list[tuple[Path, str]]:
    """The run's PNG plots with captions: loss curves (when training ran), the PCA map, the norms."""
    curves = {k: v for k, v in history.items() if k in ("train/loss", "train/heldout_loss", "train/probe_cosine")}
    new = [t for t, (kind, _, _) in neighbours.items() if kind == "new"]
    near = {t: [o for o, _ in after] for t, (_, _, after) in neighbours.items()}
    drawn = [
        (loss_curves(curves, directory / "loss.png"), "Training loss, held-out loss and probe cosine by step"),
        (pca_map(adapted.table, new, near, directory / "pca.png",
                 shifted=[t for t, (kind, _, _) in neighbours.items() if kind == "shifted"]) if new else None,
         "New tokens among their nearest rows (2-D PCA)"),
        (norm_histogram(row_norms(adapted.table.matrix[: adapted.base_rows]), row_norms(induced.vectors),
                        directory / "norms.png") if len(induced.tokens) else None,
         "Norms of the induced vectors against the table's rows"),
    ]
    plots = [(path, caption) for path, caption in drawn if path is not None]
    return plots


def run_report(options: AdaptOptions, base: EmbeddingTable, vocab: DomainVocab, chosen: dict[str, list[Any]],
               metrics: dict[str, float], comparison: list[tuple[str, float | None, float | None]],
               neighbours: KindNeighbours, plots: list[tuple[Path, str]], warned: list[str],
               exports: dict[str, Path], registered: tuple[str, str] | None, out_dir: Path) -> RunReport:
    """What ``report.md`` says about an adapt run."""
    m = metrics
    train = options.train
    loaded = [
        ("base table", f"{absolute(options.embedding_path)}: {len(base):,} rows x {base.dim} "
                       f"(sha256 of rows {base.checksum[:12]})"),
        ("corpus", f"{options.corpus.source}: {int(m['corpus/tokens']):,} tokens in {int(m['corpus/documents']):,} "
                   f"documents, {int(m['corpus/distinct_tokens']):,} distinct"),
        ("induction", f"{options.induce.method}: {int(m['induce/placed']):,} placed, "
                      f"{int(m['induce/unplaced']):,} unplaced"),
        ("fine-tuning", "none" if train.objective == "none" else
         f"{train.objective} ({train.optimizer}, lr {train.lr:g}, context {train.context}): "
         f"{int(m.get('train/steps', 0)):,} steps" + (", stopped early" if m.get("train/stopped_early") else "")),
    ]
    rows: list[tuple[str, float | None, float | None]] = [
        ("vocab/coverage", m["vocab/coverage_before"], m["vocab/coverage_after"]),
            ("rows", m["adapt/rows_before"], m["adapt/rows_after"])]
    for name in ("induce/selftest_mean_cosine", "induce/selftest_recall_at_10"):
        if name in m:
            rows.append((name, None, m[name]))
    for name in ("train/heldout_loss", "train/probe_cosine"):
        if f"{name}_initial" in m and f"{name}_best" in m:
            rows.append((f"{name} (start -> kept)", m[f"{name}_initial"], m[f"{name}_best"]))
    rows.append(("integrity/frozen_max_abs_diff", None, m["integrity/frozen_max_abs_diff"]))
    outputs = [(fmt, str(path)) for fmt, path in exports.items()]
    if registered:
        outputs.append(("MLflow model", f"models:/{registered[0]}/{registered[1]}"))
    table_rows = list(zip(*(chosen[k] for k in ("token", "reason", "count", "score", "method")), strict=True))
    shown = [r for r in table_rows if r[1] == "new"][:20] + [r for r in table_rows if r[1] == "shifted"][:10]
    return RunReport(
        title=f"Adapting {Path(options.embedding_path).name} to {options.corpus.source}",
        loaded=loaded, chosen=shown, chosen_total=len(table_rows), comparison=rows + comparison,
        neighbours={t: (before, after) for t, (_, before, after) in neighbours.items()},
        plots=[(str(path.relative_to(out_dir)), caption) for path, caption in plots],
        warnings=warned, outputs=outputs)
