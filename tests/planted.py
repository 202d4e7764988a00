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
