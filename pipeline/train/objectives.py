"""The losses fine-tuning minimises, per pair or per co-occurrence cell (pure TensorFlow, no state)."""

from __future__ import annotations

import tensorflow as tf


def sgns_loss(centre: tf.Tensor, context: tf.Tensor, negatives: tf.Tensor) -> tf.Tensor:
    """Skip-gram negative-sampling loss of each pair: ``-log s(w.c) - sum_k log s(-w.n_k)``.

    Args:
        centre: ``(batch, dim)`` centre vectors.
        context: ``(batch, dim)`` true context vectors.
        negatives: ``(batch, k, dim)`` negative context vectors.

    Returns:
        ``(batch,)`` losses.
    """
    positive = tf.reduce_sum(centre * context, axis=-1)
    negative = tf.einsum("bd,bkd->bk", centre, negatives)
    return tf.nn.softplus(-positive) + tf.reduce_sum(tf.nn.softplus(negative), axis=-1)


def window_sgns_loss(centre: tf.Tensor, contexts: tf.Tensor, mask: tf.Tensor, pool: tf.Tensor,
                     negatives: float) -> tf.Tensor:
    """SGNS loss of each window's pairs, with a pool of negatives shared by the batch.

    Each pair counts ``-log s(w.c)`` plus ``negatives / len(pool)`` times ``-log s(-w.n)`` over the
    pool: in expectation over the pool, the loss of ``negatives`` independent draws per pair.

    Args:
        centre: ``(batch, dim)`` centre vectors.
        contexts: ``(batch, width, dim)`` context vectors.
        mask: ``(batch, width)`` 1.0 for a real pair, 0.0 for a masked context.
        pool: ``(pool, dim)`` negative context vectors.
        negatives: negatives per pair.

    Returns:
        ``(batch,)`` the summed loss of each window's pairs.
    """
    positive = tf.einsum("bd,bjd->bj", centre, contexts)
    negative = tf.reduce_sum(tf.nn.softplus(tf.matmul(centre, pool, transpose_b=True)), axis=-1)
    pairs = tf.reduce_sum(mask, axis=-1)
    scale = negatives / tf.cast(tf.shape(pool)[0], centre.dtype)
    return tf.reduce_sum(mask * tf.nn.softplus(-positive), axis=-1) + pairs * scale * negative


def glove_loss(centre: tf.Tensor, context: tf.Tensor, centre_bias: tf.Tensor, context_bias: tf.Tensor,
               log_count: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """GloVe's weighted least squares of each co-occurrence cell: ``f(X) (w.c + b + b~ - log X)^2``.

    Returns:
        ``(batch,)`` losses.
    """
    error = tf.reduce_sum(centre * context, axis=-1) + centre_bias + context_bias - log_count
    return weight * tf.square(error)


def anchor_penalty(rows: tf.Tensor, pretrained: tf.Tensor, anchored: tf.Tensor, mu: float) -> tf.Tensor:
    """Mittens' anchor: ``mu * ||w - w_pretrained||^2`` for anchored rows, 0 for the others.

    Args:
        rows: ``(batch, dim)`` current values.
        pretrained: ``(batch, dim)`` pretrained values.
        anchored: ``(batch,)`` 1.0 for anchored rows, 0.0 otherwise.
        mu: the anchor's weight.
    """
    return mu * anchored * tf.reduce_sum(tf.square(rows - pretrained), axis=-1)
