"""Benchmark: quality of induced vectors for new tokens on real text, side by side with gensim.

The real-data kit (../shared/realdata/build.sh): the MiniLM whole-word table, the Python 3.11
documentation as the domain corpus, and FOLDOC related-term pairs. Evaluation: the pairs whose two
words both occur at least 5 times in the corpus and of which at least one is new; for each true
pair (a, b), the cosine of (a, b) against that of (a, r) with r a random word of the pairs (seeded);
AUC = share of wins, ties counting half. ``1neg`` draws one r per pair (the protocol of the issue),
``50neg`` fifty (steadier). Table words keep their pretrained vectors; new words get induced ones.

usage: bench/quality.py [--kit DIR] [--no-gensim] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from pipeline.collector import existing_objects_frozen  # noqa: E402
from pipeline.cooccurrence import context_counts  # noqa: E402
from pipeline.corpus import files_corpus  # noqa: E402
from pipeline.counts import TokenCounts, count_tokens  # noqa: E402
from pipeline.evaluate import pair_wins  # noqa: E402
from pipeline.formats import LoadOptions, load_table  # noqa: E402
from pipeline.induce import InduceOptions, fitting_tokens  # noqa: E402
from pipeline.selftest import induce_and_test, selftest_pool  # noqa: E402
from pipeline.table import EmbeddingTable  # noqa: E402
from pipeline.tokenize import Tokenizer, TokenizerOptions  # noqa: E402

# the evaluation set's own token shape (shared/realdata/foldoc_pairs.py)
EVAL_PATTERN = r"[a-z][a-z0-9_]*(?:['\-][a-z0-9_]+)*"
MIN_COUNT = 5


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(word, word) pairs of a tab-separated file, ``#`` lines skipped."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            a, b = line.split("\t")[:2]
            pairs.append((a, b))
    return pairs


def auc(vectors: Callable[[str], npt.NDArray[np.float32]], pairs: list[tuple[str, str]], *, negatives: int = 1,
        seed: int = 0) -> float:
    """Share of (a, b) pairs whose cosine beats (a, r), r drawn from the pairs' words (never a or b)."""
    words = sorted({w for p in pairs for w in p})
    where = {w: i for i, w in enumerate(words)}
    a = np.array([where[x] for x, _ in pairs])
    b = np.array([where[y] for _, y in pairs])
    return float(pair_wins(np.stack([vectors(w) for w in words]), a, b, negatives=negatives, seed=seed).mean())


def lookup(table: EmbeddingTable, tokens: tuple[str, ...], induced: npt.NDArray[np.float32],
           dim: int) -> Callable[[str], npt.NDArray[np.float32]]:
    """Pretrained vectors for table words, induced ones for new words, zeros for unplaced ones."""
    placed = dict(zip(tokens, induced, strict=True))
    zero = np.zeros(dim, dtype=np.float32)

    def vector(word: str) -> npt.NDArray[np.float32]:
        row = table.get(word)
        return table.matrix[row] if row is not None else placed.get(word, zero)

    return vector


def run_gensim(corpus_path: Path, tokenizer: Tokenizer, table: EmbeddingTable, epochs: int) -> tuple[
        dict[str, npt.NDArray[np.float32]], float, bool]:
    """Word2Vec skip-gram (window 5, 5 negatives, 2 workers) continuing from the table, its rows locked.

    Run as our ``adapt()`` runs, with the objects that exist before it set aside from the garbage
    collector (:func:`~pipeline.collector.existing_objects_frozen`): otherwise each of its full
    collections walks the million objects TensorFlow brought into this process (0.7-1.0 s a run).
    """
    with existing_objects_frozen():
        return _run_gensim(corpus_path, tokenizer, table, epochs)


def _run_gensim(corpus_path: Path, tokenizer: Tokenizer, table: EmbeddingTable, epochs: int) -> tuple[
        dict[str, npt.NDArray[np.float32]], float, bool]:
    from gensim.models import Word2Vec

    lines = corpus_path.read_text(encoding="utf-8").splitlines()
    sentences: list[list[str]] = []
    for start in range(0, len(lines), 8192):  # one TensorFlow call per block of lines, not per line
        batch = tokenizer(tf.constant(lines[start : start + 8192])).to_list()
        sentences.extend([t.decode("utf-8") for t in tokens] for tokens in batch if tokens)
    started = time.perf_counter()
    model = Word2Vec(vector_size=table.dim, window=5, sg=1, negative=5, min_count=MIN_COUNT, workers=2, seed=1,
                     epochs=epochs)
    model.build_vocab(sentences)
    keys = model.wv.index_to_key
    rows = np.array([i for i, w in enumerate(keys) if w in table], dtype=np.int64)
    model.wv.vectors[rows] = table.matrix[table.indices([keys[i] for i in rows])]
    model.wv.vectors_lockf = np.ones(len(model.wv), dtype=np.float32)
    model.wv.vectors_lockf[rows] = 0.0
    before = model.wv.vectors[rows].copy()
    model.train(sentences, total_examples=len(sentences), epochs=epochs)
    seconds = time.perf_counter() - started
    locked = bool(np.array_equal(before, model.wv.vectors[rows]))
    return {w: model.wv[w] for w in keys if w not in table}, seconds, locked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, default=Path(os.environ.get("REALDATA_DIR", "~/.cache/realdata")),
                        help="the real-data kit (../shared/realdata/build.sh DIR)")
    parser.add_argument("--no-gensim", action="store_true", help="skip gensim's Word2Vec")
    parser.add_argument("--epochs", type=int, default=5, help="gensim's epochs")
    args = parser.parse_args()
    kit = args.kit.expanduser()
    corpus_path = kit / "corpora" / "python311_doc.txt"
    table = load_table(kit / "vectors" / "minilm_words.w2v.txt", LoadOptions(progress=False))
    tokenizer = Tokenizer(TokenizerOptions(pattern=EVAL_PATTERN))
    corpus = files_corpus([str(corpus_path)])

    started = time.perf_counter()
    counts: TokenCounts = count_tokens(corpus, tokenizer, progress=False)
    count_seconds = time.perf_counter() - started
    new = tuple(sorted((t for t, n in counts.counts.items() if n >= MIN_COUNT and t not in table),
                       key=lambda t: (-counts.counts[t], t)))
    pairs = [(a, b) for a, b in read_pairs(kit / "evalsets" / "foldoc_pairs.tsv")
             if counts.counts.get(a, 0) >= MIN_COUNT and counts.counts.get(b, 0) >= MIN_COUNT
             and (a not in table or b not in table)]
    print(f"kit {kit}: table {len(table):,} x {table.dim}; corpus {counts.total:,} tokens, "
          f"{len(new):,} new tokens with count >= {MIN_COUNT}; {len(pairs):,} evaluation pairs")
    print(f"count pass: {count_seconds:.1f} s\n")

    methods = {
        "random": InduceOptions(method="random", selftest_size=0),
        "mean_context": InduceOptions(method="mean_context", selftest_size=0),
        "plain a la carte": InduceOptions(method="alacarte", fit_weight=0.0, subword_weight=0.0, min_contexts=1,
                                          selftest_size=0),
        "subword": InduceOptions(method="subword", selftest_size=0),
        "ours (induce=auto, default)": InduceOptions(),
    }
    print(f"{'method':32} {'AUC 1neg':>9} {'AUC 50neg':>10} {'seconds':>8}  self-test (cos, recall@10)")
    rows = []
    for name, options in methods.items():
        begun = time.perf_counter()
        with existing_objects_frozen():  # as adapt() and run_gensim run
            fitting = fitting_tokens(counts, table, options)
            pool = selftest_pool(counts, table, options)
            contexts = context_counts(corpus, tokenizer, table, tuple(dict.fromkeys(new + fitting + pool)),
                                      window=options.window, progress=False)
            induced, checked = induce_and_test(contexts, table, counts, new, options)  # as tasks.adapt does
        seconds = time.perf_counter() - begun + count_seconds
        vector = lookup(table, induced.tokens, induced.vectors, table.dim)
        one, fifty = auc(vector, pairs), auc(vector, pairs, negatives=50)
        note = f"{checked.mean_cosine:.3f}, {checked.recall_at_10:.3f}" if checked else ""
        print(f"{name:32} {one:9.3f} {fifty:10.3f} {seconds:8.1f}  {note}")
        rows.append((name, one, fifty, seconds))
    if not args.no_gensim:
        placed, seconds, locked = run_gensim(corpus_path, tokenizer, table, args.epochs)
        zero = np.zeros(table.dim, dtype=np.float32)
        vector = lambda w: table.matrix[table.index_of(w)] if w in table else placed.get(w, zero)  # noqa: E731
        one, fifty = auc(vector, pairs), auc(vector, pairs, negatives=50)
        name = f"gensim Word2Vec sg {args.epochs} ep, locked"
        print(f"{name:32} {one:9.3f} {fifty:10.3f} {seconds:8.1f}  table rows unchanged: {locked}")
        rows.append((name, one, fifty, seconds))
    ours = rows[4]
    print(f"\ngoal: induction alone AUC >= 0.68 in < 30 s: measured {ours[1]:.3f} (1neg), {ours[2]:.3f} (50neg) "
          f"in {ours[3]:.1f} s: {'met' if ours[1] >= 0.68 and ours[3] < 30 else 'NOT met'}")
    if not args.no_gensim:
        print(f"ours vs gensim: AUC {ours[1] - rows[5][1]:+.3f} (1neg), {ours[2] - rows[5][2]:+.3f} (50neg); "
              f"time {ours[3] / rows[5][3]:.2f}x gensim's")


if __name__ == "__main__":
    main()
