"""The trainable rows: which table rows training may change, their values, and the in-place write-back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class TrainedRows:
    """The result of fine-tuning: new values for some rows of the adapted table.

    Attributes:
        tokens: the trained tokens (new tokens first, then shifted ones).
        vectors: ``(len(tokens), dim)`` float32, their values after training.
        metrics: the loop's final metrics (``train/*``).
        checkpoint: the directory of the last checkpoint, if any was written.
    """

    tokens: tuple[str, ...]
    vectors: npt.NDArray[np.float32]
    metrics: dict[str, float]
    checkpoint: str | None = None


def scatter_rows(target: npt.NDArray[np.float32] | tf.Variable, indices: npt.NDArray[np.int64],
                 rows: npt.NDArray[np.float32] | tf.Tensor) -> None:
    """Write ``rows`` into ``target`` at ``indices``, in place: O(len(indices) * dim), whatever the table's size.

    ``target`` is a writable numpy matrix (fancy assignment) or a ``tf.Variable`` (``scatter_update``,
    on the variable's device). Never ``tf.tensor_scatter_nd_update``, which returns a copy of the table.
    """
    if isinstance(target, np.ndarray):
        target[indices] = rows
        return
    import tensorflow as tf

    target.scatter_update(tf.IndexedSlices(tf.convert_to_tensor(rows, dtype=target.dtype),
                                           tf.convert_to_tensor(indices, dtype=tf.int64)))
