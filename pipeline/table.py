"""The embedding table: tokens, their fixed row indices, a float32 matrix and its checksum."""

from __future__ import annotations

import hashlib
import mmap
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import numpy as np
import numpy.typing as npt

BLOCK_ROWS = 65536
NORM_BLOCK_ROWS = 8192  # rows widened to float64 at a time by row_norms: 8192 x 300 dims is 20 MB


def row_blocks(matrix: npt.NDArray[np.float32], block_rows: int = BLOCK_ROWS) -> Iterator[
        tuple[int, npt.NDArray[np.float32]]]:
    """``(first row, block)`` over ``matrix``, a block of rows at a time.

    When ``matrix`` is a read-only memory map (a table loaded from ``.npy`` or the parse cache), each
    block's pages are handed back once the caller moves on (``madvise(MADV_DONTNEED)``): they stay
    in the page cache and a later read maps them again, but a pass over a large table no longer
    leaves the whole file resident in this process. Other matrices are only sliced.
    """
    found = getattr(matrix, "_mmap", None)
    handle = found if isinstance(found, mmap.mmap) and getattr(matrix, "mode", "") == "r" else None
    origin = np.frombuffer(handle, dtype=np.uint8).ctypes.data if handle is not None else 0
    for start in range(0, matrix.shape[0], block_rows):
        block = matrix[start : start + block_rows]
        yield start, block
        if handle is not None and block.size:
            first = (block.ctypes.data - origin) // mmap.PAGESIZE * mmap.PAGESIZE
            last = block.ctypes.data - origin + block.nbytes
            handle.madvise(mmap.MADV_DONTNEED, first, last - first)


def row_norms(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The L2 norm of every row, a block of rows at a time (a memory-mapped table is never read whole).

    Each block is widened to float64 before squaring, so the sums neither overflow nor lose digits.
    """
    norms = np.empty(matrix.shape[0], dtype=np.float32)
    for start, block in row_blocks(matrix, NORM_BLOCK_ROWS):
        wide = np.asarray(block, dtype=np.float64)
        norms[start : start + len(block)] = np.sqrt(np.einsum("ij,ij->i", wide, wide))
    return norms


class EmbeddingTable:
    """An append-only table of token vectors.

    Existing tokens keep their row index forever; :meth:`append` adds rows at the end. The matrix
    is exposed read-only (it may be a memory map of a cached file); ``len(table)`` is the number of
    rows and ``token in table`` tests membership.

    Args:
        tokens: one token per row, unique.
        matrix: ``(len(tokens), dim)`` float32 matrix.
        source: where the table came from, used in error messages.
    """

    def __init__(
        self, tokens: Sequence[str], matrix: npt.NDArray[np.float32], source: str = "<memory>"
    ) -> None:
        if matrix.ndim != 2:
            raise ValueError(f"{source}: matrix must be 2-D, got shape {matrix.shape}")
        if matrix.dtype != np.float32:
            raise ValueError(f"{source}: matrix must be float32, got {matrix.dtype}")
        if len(tokens) != matrix.shape[0]:
            raise ValueError(f"{source}: {len(tokens)} tokens for {matrix.shape[0]} rows")
        self.source = source
        self._tokens: tuple[str, ...] = tuple(tokens)
        self._index: dict[str, int] = dict(zip(self._tokens, range(len(self._tokens)), strict=True))
        if len(self._index) != len(self._tokens):
            seen: dict[str, int] = {}
            for i, token in enumerate(self._tokens):
                if seen.setdefault(token, i) != i:
                    raise ValueError(f"{source}: token {token!r} appears at rows {seen[token]} and {i}")
        self._matrix = matrix
        self._checksum: str | None = None

    # -- read access ---------------------------------------------------------------------------
    @property
    def tokens(self) -> Sequence[str]:
        """The tokens, in row order (an immutable tuple, shared: no copy per access)."""
        return self._tokens

    @property
    def matrix(self) -> npt.NDArray[np.float32]:
        """The ``(rows, dim)`` float32 matrix, read-only."""
        view = self._matrix.view()
        view.flags.writeable = False
        return view

    @property
    def dim(self) -> int:
        """The vector dimension."""
        return int(self._matrix.shape[1])

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def index_of(self, token: str) -> int:
        """The row index of ``token``.

        Raises:
            KeyError: the token is not in the table.
        """
        try:
            return self._index[token]
        except KeyError:
            raise KeyError(f"token {token!r} not in table") from None

    def get(self, token: str, default: int | None = None) -> int | None:
        """The row index of ``token``, or ``default`` when it is absent."""
        return self._index.get(token, default)

    def indices(self, tokens: Iterable[str], missing: int = -1) -> npt.NDArray[np.int64]:
        """Row indices of ``tokens``, with ``missing`` for tokens not in the table."""
        get = self._index.get
        return np.fromiter((get(t, missing) for t in tokens), dtype=np.int64)

    @overload
    def vector(self, token: str) -> npt.NDArray[np.float32]: ...
    @overload
    def vector(self, token: int) -> npt.NDArray[np.float32]: ...
    def vector(self, token: str | int) -> npt.NDArray[np.float32]:
        """The vector of a token (by name or row index), read-only."""
        row = self.index_of(token) if isinstance(token, str) else token
        return self.matrix[row]

    @property
    def checksum(self) -> str:
        """sha256 over the tokens and the little-endian float32 matrix, as hex; computed once."""
        if self._checksum is None:
            digest = hashlib.sha256()
            digest.update(f"{len(self)} {self.dim}\n".encode())
            digest.update("\n".join(self._tokens).encode("utf-8"))
            digest.update(b"\0")
            for _, rows in row_blocks(self._matrix):
                block = np.ascontiguousarray(rows, dtype="<f4")
                digest.update(block.data.cast("B"))
            self._checksum = digest.hexdigest()
        return self._checksum

    # -- growth --------------------------------------------------------------------------------
    def append(self, tokens: Sequence[str], vectors: npt.NDArray[np.floating],
               replace: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None = None) -> EmbeddingTable:
        """A new table with ``tokens`` appended as rows; this table's rows keep their indices.

        Args:
            tokens: tokens not yet in the table, unique.
            vectors: ``(len(tokens), dim)`` finite values.
            replace: ``(indices, rows)``: rows of this table that get new values in the new table
                (trained rows), written with one in-place scatter into the new matrix.

        Raises:
            ValueError: a duplicate or existing token, a shape mismatch or a non-finite value.
        """
        if isinstance(tokens, str):
            raise TypeError(f"append: tokens must be a sequence of tokens, got the string {tokens!r}")
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape != (len(tokens), self.dim):
            raise ValueError(
                f"append: expected vectors of shape ({len(tokens)}, {self.dim}), got {vectors.shape}"
            )
        seen: set[str] = set()
        for token in tokens:
            if token in self._index:
                raise ValueError(f"append: token {token!r} already in table at row {self._index[token]}")
            if token in seen:
                raise ValueError(f"append: token {token!r} given twice")
            seen.add(token)
        # check after the cast: a finite float64 beyond float32's range would become inf
        with np.errstate(over="ignore"):
            rows = vectors.astype(np.float32)
        bad = ~np.isfinite(rows).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"append: vector of {tokens[row]!r} is not finite in float32")
        matrix = np.empty((len(self) + len(tokens), self.dim), dtype=np.float32)
        for start, block in row_blocks(self._matrix):
            matrix[start : start + len(block)] = block
        matrix[len(self) :] = rows
        if replace is not None:
            indices, values = np.asarray(replace[0], dtype=np.int64), np.asarray(replace[1], dtype=np.float32)
            inside = not len(indices) or 0 <= indices.min() <= indices.max() < len(self)
            if values.shape != (len(indices), self.dim) or not inside:
                raise ValueError(f"append: replace needs rows of this table and ({len(indices)}, {self.dim}) values")
            if not np.isfinite(values).all():
                raise ValueError("append: a replacing row is not finite")
            matrix[indices] = values
        return EmbeddingTable([*self._tokens, *tokens], matrix, source=self.source)

    def head(self, rows: int) -> EmbeddingTable:
        """The first ``rows`` rows as a table (a view, no copy)."""
        return EmbeddingTable(self._tokens[:rows], self._matrix[:rows], source=self.source)

    def __repr__(self) -> str:
        return f"EmbeddingTable({len(self)} x {self.dim}, source={self.source!r})"
