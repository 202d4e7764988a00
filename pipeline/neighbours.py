"""Nearest rows by cosine: batched matrix products on TensorFlow's device, the table read a block at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from pipeline.table import EmbeddingTable

BLOCK_ROWS = 262144


def nearest(table: EmbeddingTable, queries: Sequence[str], k: int = 10) -> dict[str, list[tuple[str, float]]]:
    """The ``k`` rows nearest each query token by cosine (the token itself excluded).

    The whole table is never normalised at once: each block of rows is scored against all
    queries and merged into a running top-k.
    """
    if not queries:
        return {}
    rows = table.indices(queries)
    missing = [q for q, r in zip(queries, rows, strict=True) if r < 0]
    if missing:
        raise KeyError(f"token {missing[0]!r} not in table")
    matrix = table.matrix
    q = tf.math.l2_normalize(tf.constant(matrix[rows]), axis=1)
    best_scores = tf.fill([len(queries), 0], tf.constant(0.0))
    best_index = tf.zeros([len(queries), 0], dtype=tf.int64)
    width = min(k + 1, len(table))
    for start in range(0, len(table), BLOCK_ROWS):
        block = tf.math.l2_normalize(tf.constant(np.asarray(matrix[start : start + BLOCK_ROWS])), axis=1)
        scores = tf.matmul(q, block, transpose_b=True)
        top = tf.math.top_k(scores, k=min(width, int(block.shape[0])))
        best_scores = tf.concat([best_scores, top.values], axis=1)
        best_index = tf.concat([best_index, tf.cast(top.indices, tf.int64) + start], axis=1)
        merged = tf.math.top_k(best_scores, k=min(width, int(best_scores.shape[1])))
        best_scores = merged.values
        best_index = tf.gather(best_index, merged.indices, batch_dims=1)
    tokens = table.tokens
    result: dict[str, list[tuple[str, float]]] = {}
    for query, row, idx, score in zip(queries, rows, best_index.numpy(), best_scores.numpy(), strict=True):
        result[query] = [(tokens[j], float(s)) for j, s in zip(idx, score, strict=True) if j != row][:k]
    return result
