"""GloVe's input: the trainable rows' weighted co-occurrence cells, held sparse, in a resumable stream."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from pipeline.cooccurrence import sparse_counts
from pipeline.train.data import CHUNK_WINDOWS, START, Position


def cooccurrence_cells(windows: npt.NDArray[np.int32], offsets: npt.NDArray[np.int64], trainable: int,
                       contexts: int) -> sp.csr_matrix:
    """GloVe's counts ``X[centre, context]``, each co-occurrence weighing ``1 / distance``.

    A ``(trainable, contexts)`` sparse matrix built a chunk of windows at a time: never dense.
    """
    total = sp.csr_matrix((trainable, contexts), dtype=np.float64)
    weight = 1.0 / np.abs(offsets).astype(np.float64)
    for start in range(0, len(windows), CHUNK_WINDOWS * 8):
        block = np.asarray(windows[start: start + CHUNK_WINDOWS * 8])
        which, column = np.nonzero(block[:, 1:] >= 0)
        total = total + sparse_counts(block[which, 0], block[which, 1 + column], (trainable, contexts),
                                      weight[column])
    total.sum_duplicates()
    return total


def cell_arrays(cells: sp.csr_matrix, x_max: float, alpha: float) -> tuple[
        npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The non-zero cells as (centres, contexts, log counts, GloVe weights ``min((X / x_max) ** alpha, 1)``)."""
    coo = cells.tocoo()
    return (coo.row.astype(np.int32), coo.col.astype(np.int32), np.log(coo.data).astype(np.float32),
            np.minimum((coo.data / x_max) ** alpha, 1.0).astype(np.float32))


class CellStream:
    """Non-zero cells of the co-occurrence matrix, a seeded permutation per epoch, in batches.

    Yields ``(centres, contexts, log counts, weights)`` and the :class:`Position` after each batch;
    the whole epoch is one chunk.
    """

    def __init__(self, cells: sp.csr_matrix, *, batch_size: int, epochs: int, seed: int, x_max: float,
                 alpha: float) -> None:
        self.centres, self.contexts, self.log_counts, self.weights = cell_arrays(cells, x_max, alpha)
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed

    def planned_steps(self) -> int:
        """The steps of all epochs (at least 1)."""
        return max(1, self.epochs * -(-len(self.centres) // self.batch_size))

    def batches(self, start: Position = START) -> Iterator[tuple[tuple[npt.NDArray[np.generic], ...], Position]]:
        """Batches from ``start`` to the end of the last epoch."""
        n_batches = -(-len(self.centres) // self.batch_size)
        for epoch in range(start.epoch, self.epochs):
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.centres))
            first = start.batch if epoch == start.epoch else 0
            for b in range(first, n_batches):
                pick = order[b * self.batch_size: (b + 1) * self.batch_size]
                after = Position(epoch, 0, b + 1) if b + 1 < n_batches else Position(epoch + 1, 0, 0)
                yield (self.centres[pick], self.contexts[pick], self.log_counts[pick], self.weights[pick]), after
