"""A small table and corpus with planted structure: clusters of tokens whose contexts differ.

``zorblax`` (new) only ever appears among cluster-A words, ``quuxify`` (new) among cluster-B words,
so a sound induction method must place each near its own cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.formats import save_table
from pipeline.table import EmbeddingTable

CLUSTERS = {
    "a": ["apple", "apricot", "avocado", "almond", "anise", "artichoke"],
    "b": ["bolt", "bracket", "brace", "bearing", "bushing", "buckle"],
    "c": ["cello", "cymbal", "clarinet", "cornet", "celesta", "conga"],
}
FILLER = ["the", "of", "and", "with", "for", "on"]
NEW = {"zorblax": "a", "quuxify": "b"}
DIM = 16


@dataclass(frozen=True)
class Planted:
    """Paths of the planted table and corpus, and the table itself."""

    table: EmbeddingTable
    table_path: Path
    corpus_path: Path


def planted_table(seed: int = 0) -> EmbeddingTable:
    """Cluster words near three orthogonal-ish centres, filler words near the origin."""
    rng = np.random.default_rng(seed)
    centres = {name: rng.normal(0, 1, DIM) * 3 for name in CLUSTERS}
    tokens: list[str] = []
    rows: list[np.ndarray] = []
    for name, words in CLUSTERS.items():
        for word in words:
            tokens.append(word)
            rows.append(centres[name] + rng.normal(0, 0.3, DIM))
    for word in FILLER:
        tokens.append(word)
        rows.append(rng.normal(0, 0.3, DIM))
    return EmbeddingTable(tokens, np.asarray(rows, dtype=np.float32), source="planted")


def planted_corpus(lines: int = 300, seed: int = 1) -> list[str]:
    """Documents of one cluster's words, some holding that cluster's new token."""
    rng = np.random.default_rng(seed)
    docs: list[str] = []
    by_cluster = {cluster: token for token, cluster in NEW.items()}
    names = list(CLUSTERS)
    for i in range(lines):
        cluster = names[i % len(names)]
        words = list(rng.choice(CLUSTERS[cluster], size=8)) + list(rng.choice(FILLER, size=2))
        rng.shuffle(words)
        if cluster in by_cluster and i % 2 == 0:
            words.insert(int(rng.integers(0, len(words))), by_cluster[cluster])
        docs.append(" ".join(words).capitalize() + ".")
    return docs


def write_planted(directory: Path, table_name: str = "table.w2v.txt") -> Planted:
    """Write the planted table and corpus under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    table = planted_table()
    table_path = directory / table_name
    save_table(table, table_path)
    corpus_path = directory / "corpus.txt"
    corpus_path.write_text("\n".join(planted_corpus()) + "\n", encoding="utf-8")
    return Planted(table, table_path, corpus_path)


@dataclass(frozen=True)
class EvalSets:
    """Paths of evaluation files written over the planted words."""

    similarity: Path
    pairs: Path
    analogies: Path


def write_eval_sets(directory: Path) -> EvalSets:
    """A similarity set (same-cluster pairs score high), related pairs touching the new tokens, analogies.

    Words are written in upper case now and then: gensim's rules match them case-insensitively.
    """
    directory.mkdir(parents=True, exist_ok=True)
    a, b, c = CLUSTERS["a"], CLUSTERS["b"], CLUSTERS["c"]
    similar = [(a[0], a[1], 9.0), (b[0], b[1], 8.5), (c[0], c[1], 8.0), (a[2], b[2], 2.0), (b[3], c[3], 1.5),
               (a[4], c[4], 1.0), (a[3].upper(), a[5], 7.5), (c[2], c[5], 7.0), ("missing", a[0], 5.0)]
    similarity = directory / "simlex_like.txt"
    similarity.write_text("# word1\tword2\tscore\n" + "".join(f"{x}\t{y}\t{s}\n" for x, y, s in similar),
                          encoding="utf-8")
    related = [("zorblax", a[0]), ("zorblax", a[1]), ("quuxify", b[0]), ("quuxify", b[1]), (a[2], a[3]),
               (b[2], b[3]), (c[0], c[1]), (c[2], c[3]), ("zorblax", "nowhere")]
    pairs = directory / "related.tsv"
    pairs.write_text("".join(f"{x}\t{y}\n" for x, y in related), encoding="utf-8")
    analogies = directory / "questions-words.txt"
    analogies.write_text(f": cluster-a-b\n{a[0]} {a[1]} {b[0]} {b[1]}\n{a[2]} {a[3]} {b[2]} {b[3]}\n"
                         f": cluster-c\n{c[0]} {c[1]} {c[2]} {c[3]}\n", encoding="utf-8")
    return EvalSets(similarity, pairs, analogies)
