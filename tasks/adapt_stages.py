"""The adapt job's stages wired together: options -> load, count, choose, induce, check, export -> tracker."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tensorflow as tf

from pipeline.adapted import AdaptedTable, append_induced
from pipeline.atomic import write_text_atomic
from pipeline.corpus import Corpus, files_corpus, python_docs_corpus, reading, store_as_tfds, tfds_corpus
from pipeline.counts import count_tokens
from pipeline.device import select_device
from pipeline.errors import InputError
from pipeline.export import build_manifest, export_table, write_manifest
from pipeline.formats import load_table
from pipeline.formats.cache import default_cache_dir
from pipeline.induce import InducedVectors, induce_vectors
from pipeline.integrity import check_integrity
from pipeline.neighbours import nearest
from pipeline.tokenize import Tokenizer
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
    tf.random.set_seed(options.seed)
    device = select_device(options.device)
    metrics: dict[str, float] = {}

    def record(stage_metrics: dict[str, float]) -> None:
        metrics.update(stage_metrics)
        tracker.log_metrics(stage_metrics)

    started = time.perf_counter()
    base = load_table(options.embedding_path, options.load)
    record({"load/rows": len(base), "load/dim": base.dim, "load/seconds": time.perf_counter() - started})
    tracker.set_tags({"base_checksum": base.checksum})

    corpus = open_corpus(options)
    tracker.set_tags({"corpus_fingerprint": corpus.fingerprint})
    tokenizer = Tokenizer(options.tokenizer)
    with reading(corpus):
        counts = count_tokens(corpus, tokenizer, progress=options.progress)
    if counts.total == 0:
        raise InputError(", ".join(corpus.sources[:3]), "the corpus has no tokens",
                         hint="check corpus.paths and corpus.tokenizer")
    vocab = select_new_tokens(counts, base, options.vocab)
    record({"corpus/tokens": counts.total, "corpus/documents": counts.documents,
            "corpus/distinct_tokens": len(counts.counts), "vocab/new_tokens": len(vocab.new_tokens),
            "vocab/candidates": vocab.candidates, "vocab/frozen_rows": vocab.frozen_rows,
            "vocab/coverage_before": vocab.coverage_before})

    with reading(corpus):
        induced = induce_vectors(corpus, tokenizer, base, vocab, options.induce, progress=options.progress)
    record({"induce/placed": len(induced.tokens), "induce/unplaced": len(induced.unplaced)})
    write_vocab_report(out_dir / "vocab.tsv", vocab, induced)
    tracker.log_artifact(out_dir / "vocab.tsv")

    adapted = append_induced(base, induced)
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
    manifest = build_manifest(adapted=adapted, base_path=options.embedding_path, base_checksum=base.checksum,
                              corpus_fingerprint=corpus.fingerprint, config_hash=config_hash,
                              extra={"corpus": {"source": corpus.name, "sources": list(corpus.sources)},
                                     "device": device})
    write_manifest(out_dir / "manifest.json", manifest)
    metrics["adapt/seconds"] = time.perf_counter() - started
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    tracker.log_metrics({"adapt/seconds": metrics["adapt/seconds"]})
    for path in (out_dir / "manifest.json", out_dir / "metrics.json"):
        tracker.log_artifact(path)
    tracker.log_artifacts(out_dir / "export", "export")
    return AdaptResult(adapted, metrics, manifest, exports, neighbours)


def write_vocab_report(path: Path, vocab: DomainVocab, induced: InducedVectors) -> None:
    """One row per chosen token: count, reason, the method that placed it and its context count."""
    placed = dict(zip(induced.tokens, zip(induced.methods, induced.contexts, strict=True), strict=True))
    lines = ["token\tcount\treason\tmethod\tcontexts"]
    for token, n in zip(vocab.new_tokens, vocab.new_counts, strict=True):
        method, contexts = placed.get(token, ("unplaced", 0))
        lines.append(f"{token}\t{n}\tnew\t{method}\t{contexts}")
    write_text_atomic(path, "\n".join(lines) + "\n")


def write_neighbours(path: Path, neighbours: dict[str, list[tuple[str, float]]]) -> None:
    """One row per (token, rank): the neighbour and its cosine."""
    lines = ["token\trank\tneighbour\tcosine"]
    for token, rows in neighbours.items():
        lines.extend(f"{token}\t{rank}\t{other}\t{score:.4f}" for rank, (other, score) in enumerate(rows, 1))
    write_text_atomic(path, "\n".join(lines) + "\n")


def summary(result: AdaptResult, out_dir: Path, run_id: str | None, uri: str | None) -> str:
    """The few lines a person reads at the end of a run."""
    m = result.metrics
    lines = [
        f"rows: {int(m['adapt/rows_before']):,} -> {int(m['adapt/rows_after']):,} "
        f"({int(m['vocab/new_tokens']):,} new tokens chosen, {int(m['induce/placed']):,} placed; "
        f"frozen rows unchanged: max |diff| = {m['integrity/frozen_max_abs_diff']})",
        f"coverage of corpus tokens: {m['vocab/coverage_before']:.1%} -> {m['vocab/coverage_after']:.1%}",
    ]
    for token, rows in result.neighbours.items():
        lines.append(f"  {token:>16}: " + ", ".join(other for other, _ in rows[:6]))
    lines.append(f"outputs: {out_dir}")
    if run_id:
        lines.append(f"mlflow run {run_id} at {uri} (mlflow ui --backend-store-uri {uri})")
    return "\n".join(lines)


