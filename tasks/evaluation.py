"""Evaluation: what both tasks score (sets and neighbours, before and after), and ``tasks.evaluate``'s job.

With an adapt run's manifest (found beside the table, or given), the base is the one the manifest
names, loaded as that run loaded it, and the new and shifted tokens are the run's own.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from pipeline.adapted import AdaptedTable
from pipeline.atomic import write_text_atomic
from pipeline.corpus import reading
from pipeline.counts import count_tokens
from pipeline.device import select_device
from pipeline.errors import InputError, IntegrityError
from pipeline.evaluate.suite import EvaluateOptions, EvaluationSets, before_after, read_sets, score_table
from pipeline.formats import LoadOptions, load_table
from pipeline.integrity import check_integrity
from pipeline.neighbours import neighbours_before_after
from pipeline.report import RunReport, collected_warnings
from pipeline.table import EmbeddingTable
from pipeline.tokenize import Tokenizer
from tasks.config import EvaluateTaskOptions
from tasks.sources import open_corpus
from tasks.tracking import NullTracker

MANIFEST = "manifest.json"

# token -> (kind, nearest rows before, nearest rows after)
KindNeighbours = dict[str, tuple[str, list[tuple[str, float]], list[tuple[str, float]]]]


def evaluation_metrics(base: EmbeddingTable | None, table: EmbeddingTable, sets: EvaluationSets,
                       options: EvaluateOptions, *, touching: Collection[str], seed: int,
                       device: str) -> tuple[dict[str, float], list[tuple[str, float | None, float | None]]]:
    """Every set scored on ``table`` (``_after``) and on ``base`` (``_before``, when given), and the rows
    ``(metric, before, after)`` that compare them."""
    with tf.device(device):
        after = score_table(table, sets, options, touching=touching, seed=seed).metrics("after")
        before = score_table(base, sets, options, touching=touching, seed=seed).metrics("before") \
            if base is not None else {}
    return {**before, **after}, before_after(before, after)


def summary_rows(metrics: dict[str, float]) -> list[tuple[str, float | None, float | None]]:
    """The headline before/after figures of each evaluation set: rho, AUC (and its touching part), accuracy."""
    heads = ("/rho", "/auc", "/touching_auc", "/accuracy")
    rows = before_after({k: v for k, v in metrics.items() if k.endswith("_before")},
                        {k: v for k, v in metrics.items() if k.endswith("_after")})
    return [(name.removeprefix("eval/"), b, a) for name, b, a in rows
            if name.startswith("eval/") and name.count("/") == 3 and name.endswith(heads)]


def summary_lines(metrics: dict[str, float]) -> list[str]:
    """:func:`summary_rows` as the lines the tasks print: ``pairs/foldoc/auc: 0.684 -> 0.672``."""
    return [f"{name}: " + " -> ".join("-" if v is None else f"{v:.3f}" for v in (before, after))
            for name, before, after in summary_rows(metrics)]


def coverage(table: EmbeddingTable, counts: Mapping[str, int]) -> float:
    """The share of corpus token occurrences (``counts``) that have a row in ``table``."""
    total = sum(counts.values())
    return sum(n for t, n in counts.items() if t in table) / total if total else 0.0


def shown_neighbours(table: EmbeddingTable, shown: Sequence[tuple[str, str]], before: npt.NDArray[np.float32], *,
                     k: int, device: str) -> KindNeighbours:
    """For each ``(token, kind)`` of ``shown``, its nearest rows from ``before[i]`` (zeros: none) and from its row."""
    with tf.device(device):
        found = neighbours_before_after(table, [t for t, _ in shown], before, k=k)
    return {token: (kind, *found[token]) for token, kind in shown}


def neighbour_columns(neighbours: KindNeighbours) -> dict[str, list[Any]]:
    """One row per (token, before/after, rank): the neighbour and its cosine, as columns (TSV, MLflow table)."""
    columns: dict[str, list[Any]] = {k: [] for k in ("token", "kind", "when", "rank", "neighbour", "cosine")}
    for token, (kind, before, after) in neighbours.items():
        for when, rows in (("before", before), ("after", after)):
            for rank, (other, score) in enumerate(rows, 1):
                for key, value in zip(columns, (token, kind, when, rank, other, round(score, 4)), strict=True):
                    columns[key].append(value)
    return columns


def write_columns(path: Path, columns: Mapping[str, list[Any]]) -> None:
    """Columns as TSV, atomically (empty cells for None)."""
    lines = ["\t".join(columns)]
    lines += ["\t".join("" if v is None else str(v) for v in row) for row in zip(*columns.values(), strict=True)]
    write_text_atomic(path, "\n".join(lines) + "\n")


@dataclass
class EvaluateResult:
    """What an evaluation found: flat metrics (``eval/*``, ``integrity/*``, ``vocab/coverage_*``)."""

    metrics: dict[str, float]
    manifest: Path | None


def find_manifest(given: str | None, table_path: str) -> Path | None:
    """``given``, else ``manifest.json`` in the table's folder or the one above (an adapt run's layout).

    Raises:
        InputError: ``given`` does not exist.
    """
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise InputError(given, "manifest not found", hint="check manifest=..., or leave it unset")
        return path
    if table_path.startswith("pkg://"):
        return None
    folder = Path(table_path).expanduser().resolve().parent
    return next((p for p in (folder / MANIFEST, folder.parent / MANIFEST) if p.is_file()), None)


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest written by ``tasks.adapt``.

    Raises:
        InputError: not JSON, or not a manifest of ours.
    """
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not a readable manifest ({err})", hint="point manifest= at an adapt run's "
                         "manifest.json") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("base"), dict) or "appended" not in manifest:
        raise InputError(path, "not an adapt run's manifest (no base or appended entry)",
                         hint="point manifest= at an adapt run's manifest.json")
    return manifest


def evaluate(options: EvaluateTaskOptions, out_dir: Path, tracker: NullTracker | None = None) -> EvaluateResult:
    """Evaluate ``options.embedding_path``; write ``metrics.json``, ``neighbours.tsv`` and ``report.md``.

    Raises:
        InputError: a missing or malformed table, manifest or evaluation file, or a base of another dimension.
        IntegrityError: the table is not a faithful adaptation of its base (``evaluate.integrity``).
    """
    with collected_warnings("pipeline", "tasks") as warned:
        return _evaluate(options, out_dir, tracker or NullTracker(), warned)


def _evaluate(options: EvaluateTaskOptions, out_dir: Path, tracker: NullTracker, warned: list[str]) -> EvaluateResult:
    started = time.perf_counter()
    device = select_device(options.device)
    sets = read_sets(options.evaluate)
    manifest_path = find_manifest(options.manifest, options.embedding_path)
    manifest = read_manifest(manifest_path) if manifest_path else None
    corpus = open_corpus(options.corpus) if options.corpus is not None else None
    table = load_table(options.embedding_path, options.load)
    metrics: dict[str, float] = {"load/rows": len(table), "load/dim": table.dim}
    loaded = [("table", f"{options.embedding_path}: {len(table):,} rows x {table.dim} "
                        f"(sha256 of rows {table.checksum[:12]})")]
    tracker.set_tags({"table_checksum": table.checksum})

    base = None
    if options.base is not None:
        base_path = options.base
        base_options = dataclasses.replace(options.load, sha256=None, limit=None, dim=None)
    elif manifest is not None:
        base_path = str(manifest["base"]["path"])
        base_options = LoadOptions(**{**manifest.get("base_load", {}), "progress": options.progress})
    if options.base is not None or manifest is not None:
        base = load_table(base_path, base_options)
        if base.dim != table.dim:
            raise InputError(options.embedding_path, f"dimension {table.dim}, but its base {base_path} has "
                             f"{base.dim}", hint="evaluate a table against the base it was adapted from (base=...)")
        expected = manifest["base"].get("checksum") if manifest is not None and options.base is None else None
        if expected and expected != base.checksum:
            raise InputError(base_path, f"rows checksum {base.checksum[:12]} is not the manifest's {expected[:12]}",
                             hint=f"the base changed since the run; give the original with base=... "
                                  f"(manifest: {manifest_path})")
        loaded.append(("base table", f"{base_path}: {len(base):,} rows x {base.dim}"))
        tracker.set_tags({"base_checksum": base.checksum})

    if manifest is not None:
        new = [str(a["token"]) for a in manifest["appended"]]
        shifted = [str(s["token"]) for s in manifest.get("shifted", [])]
        trained_rows = tuple(int(i) for i in manifest.get("trained_rows", []))
        loaded.append(("manifest", f"{manifest_path}: {len(new):,} new and {len(shifted):,} shifted tokens"))
    else:
        new = list(table.tokens[len(base):]) if base is not None else []
        shifted, trained_rows = [], ()
    if base is not None:
        integrity = check_integrity(base, AdaptedTable(table, len(base), tuple(table.tokens[len(base):]),
                                                       trained_rows))
        metrics.update(integrity.metrics())
        tracker.log_metrics(integrity.metrics())
        if options.evaluate.integrity and not integrity.ok:
            raise IntegrityError(options.embedding_path, integrity.problems())

    if corpus is not None and options.tokenizer is not None:
        with reading(corpus):
            counts = count_tokens(corpus, Tokenizer(options.tokenizer), progress=options.progress).counts
        metrics["vocab/coverage_after"] = coverage(table, counts)
        if base is not None:
            metrics["vocab/coverage_before"] = coverage(base, counts)
        loaded.append(("corpus", f"{corpus.name}: {sum(counts.values()):,} tokens"))

    evaluated, comparison = evaluation_metrics(base, table, sets, options.evaluate, touching=set(new) | set(shifted),
                                               seed=options.seed, device=device)
    metrics.update(evaluated)
    shown = [(t, "new") for t in new[: options.evaluate.show] if t in table] + \
        [(t, "shifted") for t in shifted[: options.evaluate.show] if t in table]
    before = np.stack([base.matrix[base.index_of(t)] if base is not None and kind == "shifted"
                       else np.zeros(table.dim, np.float32) for t, kind in shown]) \
        if shown else np.zeros((0, table.dim), np.float32)
    neighbours = shown_neighbours(table, shown, before, k=options.evaluate.neighbours, device=device)
    columns = neighbour_columns(neighbours)
    write_columns(out_dir / "neighbours.tsv", columns)

    metrics["evaluate/seconds"] = time.perf_counter() - started
    tracker.log_metrics(metrics)
    coverage_rows = [("vocab/coverage", metrics.get("vocab/coverage_before"), metrics["vocab/coverage_after"])] \
        if "vocab/coverage_after" in metrics else []
    if "integrity/frozen_max_abs_diff" in metrics:
        coverage_rows.append(("integrity/frozen_max_abs_diff", None, metrics["integrity/frozen_max_abs_diff"]))
    report = RunReport(title=f"Evaluating {Path(options.embedding_path).name}", loaded=loaded,
                       comparison=coverage_rows + comparison,
                       neighbours={t: (b, a) for t, (_, b, a) in neighbours.items()}, warnings=warned)
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    write_text_atomic(out_dir / "report.md", report.markdown())
    for name in ("metrics.json", "neighbours.tsv", "report.md"):
        tracker.log_artifact(out_dir / name)
    tracker.log_table(columns, "neighbours.json")
    print(report_summary(metrics, out_dir))
    return EvaluateResult(metrics, manifest_path)


def report_summary(metrics: dict[str, float], out_dir: Path) -> str:
    """The lines a person reads at the end."""
    lines = []
    if "integrity/ok" in metrics:
        lines.append(f"integrity: {'ok' if metrics['integrity/ok'] else 'FAILED'} "
                     f"(frozen rows max |diff| = {metrics['integrity/frozen_max_abs_diff']})")
    lines += summary_lines(metrics)
    lines.append(f"outputs: {out_dir} (report.md)")
    return "\n".join(lines)
