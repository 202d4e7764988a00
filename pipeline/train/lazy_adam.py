"""Adam that updates only the rows a sparse gradient touches (TF Addons' ``LazyAdam``, PyTorch's ``SparseAdam``)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


class LazyAdam(keras.optimizers.Adam):
    """Keras' Adam, except that a sparse gradient (``tf.IndexedSlices`` with unique rows) updates the
    moments and values of its rows only.

    Keras' Adam turns a sparse gradient dense and decays every row's moments at every step, so a step
    costs the whole trainable variable (all new and shifted rows) whatever the batch touches. Here a
    step reads and writes the batch's rows (``tf.gather``, ``scatter_update``, ``scatter_sub``): its cost
    follows the batch. A row absent from a step keeps its moments as they are, so the two differ on
    rows not seen at every step; for rows seen at every step they are the same. Bias correction uses
    the global step, as TF Addons' ``LazyAdam`` does. Dense gradients take Adam's own step.
    """

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if not isinstance(gradient, tf.IndexedSlices):
            super().update_step(gradient, variable, learning_rate)
            return
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        alpha = tf.cast(learning_rate, dtype) * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        rows = gradient.indices
        values = tf.cast(gradient.values, dtype)
        m_rows = tf.gather(m.value, rows)  # Adam's update, in Keras' own order of operations
        m_rows += (values - m_rows) * (1 - beta_1)
        v_rows = tf.gather(v.value, rows)
        v_rows += (tf.square(values) - v_rows) * (1 - beta_2)
        self.assign(m, tf.IndexedSlices(m_rows, rows, gradient.dense_shape))
        self.assign(v, tf.IndexedSlices(v_rows, rows, gradient.dense_shape))
        step_rows = (m_rows * alpha) / (tf.sqrt(v_rows) + self.epsilon)
        self.assign_sub(variable, tf.IndexedSlices(step_rows, rows, gradient.dense_shape))
