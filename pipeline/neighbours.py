"""Nearest rows by cosine: batched matrix products on TensorFlow's device, the table read a block at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from pipeline.table import EmbeddingTable, row_blocks

BLOCK_ROWS = 65536  # scores of 1,000 queries against a block: 256 MiB


def nearest_rows(table: EmbeddingTable, vectors: npt.NDArray[np.float32],
                 k: int = 10) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The ``k`` rows most cosine-similar to each of ``vectors`` (rows of the table or not), with cosines.

    The whole table is never normalised at once: each block of rows is scored against every query
    and merged into a running top-k.
    """
    q = tf.math.l2_normalize(tf.constant(np.asarray(vectors, dtype=np.float32)), axis=1)
    best_scores = tf.zeros([len(vectors), 0])
    best_index = tf.zeros([len(vectors), 0], dtype=tf.int64)
    for start, rows in row_blocks(table.matrix, BLOCK_ROWS):
        block = tf.math.l2_normalize(tf.constant(np.asarray(rows)), axis=1)
        top = tf.math.top_k(tf.matmul(q, block, transpose_b=True), k=min(k, int(block.shape[0])))
        best_scores = tf.concat([best_scores, top.values], axis=1)
        best_index = tf.concat([best_index, tf.cast(top.indices, tf.int64) + start], axis=1)
        merged = tf.math.top_k(best_scores, k=min(k, int(best_scores.shape[1])))
        best_scores = merged.values
        best_index = tf.gather(best_index, merged.indices, batch_dims=1)
    return np.asarray(best_index.numpy()), np.asarray(best_scores.numpy())


def _rows_of(table: EmbeddingTable, tokens: Sequence[str]) -> npt.NDArray[np.int64]:
    rows = table.indices(tokens)
    missing = [t for t, r in zip(tokens, rows, strict=True) if r < 0]
    if missing:
        raise KeyError(f"token {missing[0]!r} not in table")
    return rows


def nearest(table: EmbeddingTable, queries: Sequence[str], k: int = 10) -> dict[str, list[tuple[str, float]]]:
    """The ``k`` rows nearest each query token by cosine (the token itself excluded)."""
    if not queries:
        return {}
    rows = _rows_of(table, queries)
    index, scores = nearest_rows(table, table.matrix[rows], k=min(k + 1, len(table)))
    tokens = table.tokens
    return {
        query: [(tokens[j], float(s)) for j, s in zip(idx, score, strict=True) if j != row][:k]
        for query, row, idx, score in zip(queries, rows, index, scores, strict=True)
    }


def neighbours_before_after(table: EmbeddingTable, tokens: Sequence[str], before: npt.NDArray[np.float32],
                            k: int = 10) -> dict[str, tuple[list[tuple[str, float]], list[tuple[str, float]]]]:
    """For each token of ``table``, the ``k`` rows nearest its vector before (``before[i]``) and its row now.

    Both searches run over ``table``'s rows (the token's own row left out), so a token's two lists
    differ only by how its vector moved. A row of ``before`` that is all zeros (no earlier vector)
    gets an empty list.
    """
    if not tokens:
        return {}
    rows = _rows_of(table, tokens)
    wanted = min(k + 1, len(table))
    vectors = np.concatenate([np.asarray(before, dtype=np.float32), table.matrix[rows]])
    index, scores = nearest_rows(table, vectors, k=wanted)
    names = table.tokens
    has_before = np.abs(np.asarray(before)).sum(axis=1) > 0

    def listed(i: int, row: int) -> list[tuple[str, float]]:
        return [(names[j], float(s)) for j, s in zip(index[i], scores[i], strict=True) if j != row][:k]

    n = len(tokens)
    return {token: (listed(i, row) if has_before[i] else [], listed(n + i, row))
            for i, (token, row) in enumerate(zip(tokens, rows, strict=True))}
