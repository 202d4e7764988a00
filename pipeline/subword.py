"""Subword vectors learned from a table, fastText-style: character n-gram vectors whose mean predicts a row."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from pipeline.atomic import replacing, write_text_atomic
from pipeline.errors import InputError

try:  # scipy's own kernel for a CSR matrix times dense columns, the one its `@` calls, but into our array
    from scipy.sparse._sparsetools import csr_matvecs as _csr_matvecs
except ImportError:  # a scipy that moved it: `@` and a copy, the same numbers
    _csr_matvecs = None

CG_PARTS = 2  # column groups solved at once, one thread each
PRECONDITIONER_RANK = 50  # size of the randomized Nystrom sketch that preconditions the CG (0: none)
PRECONDITIONER_POWER = 2  # subspace iterations that turn the sketch towards the largest eigenvalues


def char_ngrams(token: str, low: int, high: int) -> list[str]:
    """The character n-grams of ``<token>`` from ``low`` to ``high`` characters (fastText's marks)."""
    marked = f"<{token}>"
    return [marked[i : i + n] for n in range(low, high + 1) for i in range(len(marked) - n + 1)]


def ngram_matrix(tokens: Sequence[str], index: dict[str, int], low: int, high: int, *,
                 grow: bool) -> tuple[sp.csr_matrix, npt.NDArray[np.int64]]:
    """Rows: tokens; columns: n-grams; each row the mean of its distinct n-grams (unknown ones dropped
    unless ``grow``). Also each row's count of known n-grams.

    A grown index numbers n-grams in order of first appearance, so the model, its saved files and every
    vector it gives are the same in every process (a ``set`` would follow Python's per-process string hash).
    The n-grams of all tokens are listed once and looked up by ``map`` (no per-n-gram Python loop)."""
    grams = [list(dict.fromkeys(char_ngrams(token, low, high))) for token in tokens]
    flat = list(chain.from_iterable(grams))
    if grow:
        for gram in dict.fromkeys(flat):
            if gram not in index:
                index[gram] = len(index)
    cols = np.fromiter(map(index.get, flat, repeat(-1)), dtype=np.int64, count=len(flat))
    rows = np.repeat(np.arange(len(tokens), dtype=np.int64), [len(g) for g in grams])
    if not grow:
        found = cols >= 0
        rows, cols = rows[found], cols[found]
    known = np.bincount(rows, minlength=len(tokens))
    weights = (1.0 / np.maximum(known, 1))[rows].astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum(known)])
    matrix = sp.csr_matrix((weights, cols, indptr), shape=(len(tokens), len(index)))
    matrix.sort_indices()
    return matrix, known


@dataclass(frozen=True)
class SubwordModel:
    """n-gram vectors fitted so that the mean of a table token's n-gram vectors is close to its row.

    Attributes:
        index: n-gram -> row of ``vectors``.
        vectors: ``(n-grams, dim)`` float32.
        low: shortest n-gram.
        high: longest n-gram.
        iterations: conjugate-gradient iterations the fit took.
    """

    index: dict[str, int]
    vectors: npt.NDArray[np.float32]
    low: int
    high: int
    iterations: int

    def predict(self, tokens: Sequence[str]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Vectors for ``tokens`` (zeros for a token with no known n-gram) and their known n-gram counts."""
        matrix, known = ngram_matrix(tokens, self.index, self.low, self.high, grow=False)
        return np.asarray(matrix @ self.vectors, dtype=np.float32), known


def fit_subword(tokens: Sequence[str], vectors: npt.NDArray[np.float32], *, low: int = 3, high: int = 6,
                ridge: float = 0.02, max_iterations: int = 60, tolerance: float = 2e-2,
                preconditioner_rank: int = PRECONDITIONER_RANK, rank: int = 0) -> SubwordModel:
    """Fit n-gram vectors G minimising ||X G - E||^2 + ridge ||Z||^2 in the dual (G = X^T Z).

    With ``rank`` between 1 and the dimension, E is first projected on its ``rank`` leading right
    singular vectors V (:func:`leading_directions`), and the fit solves for E V: ``rank`` columns
    instead of the dimension's, each costing the CG the same, and G = X^T Z V^T is exactly the fit of
    E V V^T. The n-grams predict little of a table's weakest directions anyway: on the kit's 384-d
    table, 256 directions (90% of the rows' squared norm) give the same AUC and self-test as all 384
    in three quarters of the time (bench/RESULTS.md). 0 (or the dimension or more): all of E.

    Solved by preconditioned conjugate gradient on ``(X X^T + ridge I) Z = E``, all columns at once
    with a step size per column: every iteration is two sparse-dense products, never a dense
    tokens x tokens matrix. The preconditioner is a randomized Nystrom approximation of ``X X^T``
    (Frangella, Tropp and Udell, 2023) of rank ``preconditioner_rank``: it evens out the largest
    eigenvalues, which the n-grams most tokens share make large, so the CG needs fewer iterations
    (22 instead of 37 on a 21,745-row table at ridge 0.02). Its sketch is seeded, so the result
    does not depend on the run. The columns are solved in :data:`CG_PARTS` groups on as many
    threads (scipy's sparse products release the GIL); each group stops when its own residual is
    below ``tolerance`` of its start. The groups do not depend on the machine, and the result is the
    same in every run on one machine; another BLAS build may round the preconditioner's products
    differently (a checkpoint's resume check then refuses the changed starting vectors). The tokens
    are taken in sorted order: tokens that share n-grams then sit together in memory, and each
    sparse product reads far less scattered data (a fifth less time on a 21,745-row table; the
    solution is the same within the tolerance).
    """
    order = sorted(range(len(tokens)), key=tokens.__getitem__)
    index: dict[str, int] = {}
    x, _ = ngram_matrix([tokens[i] for i in order], index, low, high, grow=True)
    xt = x.T.tocsr()
    target = np.asarray(vectors, dtype=np.float32)[order]
    directions = leading_directions(target, rank)
    if directions is not None:
        target = target @ directions
    preconditioner = nystrom_preconditioner(x, xt, ridge, preconditioner_rank)
    groups = [np.ascontiguousarray(part) for part in np.array_split(target, CG_PARTS, axis=1) if part.shape[1]]
    # one BLAS thread per group: the groups already fill the cores, and OpenBLAS's own threads would
    # spin against them in every preconditioner product (the fit took 1.5x as long)
    with threadpool_limits(1, user_api="blas"), \
            ThreadPoolExecutor(max(1, len(groups)), thread_name_prefix="subword_cg") as pool:  # none: no columns
        solved = list(pool.map(lambda part: _conjugate_gradient(x, xt, part, ridge, max_iterations, tolerance,
                                                                preconditioner), groups))
    z = np.concatenate([part for part, _ in solved], axis=1) if solved else np.zeros_like(target)
    if directions is not None:
        z = z @ directions.T  # tokens x dim: back in the table's space before the (larger) n-gram product
    grams = np.asarray(xt @ z, dtype=np.float32)
    return SubwordModel(index, grams, low, high, max((n for _, n in solved), default=0))


def leading_directions(matrix: npt.NDArray[np.float32], rank: int) -> npt.NDArray[np.float32] | None:
    """The ``rank`` leading right singular vectors of ``matrix``, as ``(dim, rank)`` orthonormal float32
    columns, or None when ``rank`` is 0 or not below ``dim`` (nothing to drop).

    They are the eigenvectors of the ``dim x dim`` Gram matrix with the largest eigenvalues (one
    pass over the rows, then a small symmetric eigensolve): no SVD of a tall matrix.
    """
    dim = matrix.shape[1]
    if rank < 1 or rank >= dim:
        return None
    gram = np.asarray(matrix.T @ matrix, dtype=np.float64)
    _, vectors = np.linalg.eigh(gram)  # ascending eigenvalues
    return np.ascontiguousarray(vectors[:, ::-1][:, :rank], dtype=np.float32)


@dataclass(frozen=True)
class Preconditioner:
    """``P^-1 v = v - basis (shrink * basis^T v)``: the inverse of a Nystrom preconditioner.

    Attributes:
        basis: ``(tokens, rank)`` float32, orthonormal columns: the sketch's eigenvectors of ``X X^T``.
        shrink: ``(rank,)`` float32, ``1 - (lambda_rank + ridge) / (lambda_i + ridge)`` for the sketch's
            eigenvalues ``lambda_1 >= ... >= lambda_rank``; in ``[0, 1)``, so ``P^-1`` is positive definite.
    """

    basis: npt.NDArray[np.float32]
    shrink: npt.NDArray[np.float32]

    def apply(self, vectors: npt.NDArray[np.float32], out: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``P^-1 vectors`` into ``out`` (which must not be ``vectors``)."""
        coefficients = self.basis.T @ vectors
        coefficients *= self.shrink[:, None]
        np.matmul(self.basis, coefficients, out=out)
        return np.subtract(vectors, out, out=out)


def nystrom_preconditioner(x: sp.csr_matrix, xt: sp.csr_matrix, ridge: float, rank: int, *,
                           power: int = PRECONDITIONER_POWER, seed: int = 0) -> Preconditioner | None:
    """A randomized Nystrom preconditioner for ``X X^T + ridge I`` (Frangella, Tropp and Udell, 2023,
    algorithms 2.1 and 5.1), or None when ``rank`` is 0 or the sketch is degenerate.

    The sketch starts from a seeded Gaussian ``(tokens, rank)`` matrix, turned ``power`` times by
    ``X X^T`` (subspace iteration: the eigenvalues of ``X X^T`` fall slowly, and without it the sketch
    misses the largest). It costs ``2 (power + 1)`` sparse products of ``rank`` columns, in float64.
    """
    tokens = x.shape[0]
    rank = min(rank, tokens)
    if rank < 1:
        return None
    sketch, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((tokens, rank)))
    for _ in range(power):
        sketch, _ = np.linalg.qr(x @ (xt @ sketch))
    image = np.asarray(x @ (xt @ sketch), dtype=np.float64)
    shift = np.sqrt(tokens) * np.finfo(np.float64).eps * np.linalg.norm(image, 2)
    if not shift > 0:
        return None
    image += shift * sketch
    try:
        lower = np.linalg.cholesky(sketch.T @ image)
    except np.linalg.LinAlgError:
        return None
    factor = scipy.linalg.solve_triangular(lower, image.T, lower=True).T
    basis, singular, _ = np.linalg.svd(factor, full_matrices=False)
    eigenvalues = np.maximum(singular**2 - shift, 0.0)
    shrink = 1.0 - (eigenvalues[-1] + ridge) / (eigenvalues + ridge)
    return Preconditioner(np.ascontiguousarray(basis, dtype=np.float32), shrink.astype(np.float32))


def _conjugate_gradient(x: sp.csr_matrix, xt: sp.csr_matrix, target: npt.NDArray[np.float32], ridge: float,
                        max_iterations: int, tolerance: float,
                        preconditioner: Preconditioner | None = None) -> tuple[npt.NDArray[np.float32], int]:
    """``Z`` with ``(X X^T + ridge I) Z = target`` (column by column), and the iterations it took.

    Stops when the (unpreconditioned) residual is below ``tolerance`` of the target, with or without
    a preconditioner. The sparse products write into arrays allocated once (a fresh n-grams x columns
    array per product costs more in page faults than the product itself, and two threads faulting at
    once wait on each other), the other updates are made in place and the column dot products by
    ``einsum``: the loop allocates only the preconditioner's ``rank x columns`` coefficients.
    """
    z = np.zeros_like(target)
    residual = target.copy()
    scratch = np.empty_like(target)
    middle = np.empty((xt.shape[0], target.shape[1]), dtype=np.float32)
    product = np.empty_like(target)
    preconditioned = residual if preconditioner is None else preconditioner.apply(residual, np.empty_like(target))
    direction = preconditioned.copy()
    power = np.einsum("ij,ij->j", residual, preconditioned)
    start = float(np.sqrt(np.einsum("ij,ij->j", residual, residual).sum()))
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - the count is reported
        sparse_product(x, sparse_product(xt, direction, middle), product)
        product += np.multiply(direction, ridge, out=scratch)
        step = power / np.maximum(np.einsum("ij,ij->j", direction, product), 1e-30)
        z += np.multiply(direction, step, out=scratch)
        residual -= np.multiply(product, step, out=scratch)
        squares = np.einsum("ij,ij->j", residual, residual)
        if float(np.sqrt(squares.sum())) < tolerance * start:
            break
        if preconditioner is None:
            new_power = squares
        else:
            preconditioner.apply(residual, preconditioned)
            new_power = np.einsum("ij,ij->j", residual, preconditioned)
        direction *= new_power / np.maximum(power, 1e-30)
        direction += preconditioned
        power = new_power
    return z, iterations


def sparse_product(matrix: sp.csr_matrix, dense: npt.NDArray[np.float32],
                   out: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``matrix @ dense`` written into ``out`` (not ``dense``): by scipy's kernel when the three share a dtype
    and both arrays are C-contiguous, else by ``@`` and a copy."""
    if _csr_matvecs is None or not (dense.flags.c_contiguous and out.flags.c_contiguous
                                    and matrix.dtype == dense.dtype == out.dtype):
        np.copyto(out, matrix @ dense)
        return out
    out.fill(0)  # the kernel adds to it
    _csr_matvecs(matrix.shape[0], matrix.shape[1], dense.shape[1], matrix.indptr, matrix.indices, matrix.data,
                 dense.ravel(), out.ravel())
    return out


SUBWORD_VECTORS = "subword.safetensors"
SUBWORD_INDEX = "subword.json"
_VECTORS_TENSOR = "vectors"


def save_subword(model: SubwordModel, directory: Path) -> None:
    """Write ``model`` into ``directory``: the n-gram vectors as safetensors, the rest as JSON.

    ``subword.safetensors`` holds the ``(n-grams, dim)`` float32 tensor ``vectors``;
    ``subword.json`` holds ``low``, ``high``, ``iterations`` and the n-grams in row order. Both are
    written atomically; :func:`load_subword` reads back an equal model.

    Raises:
        ValueError: the model's index does not number its n-grams ``0..n-1`` once each, or does not
            match the rows of ``vectors``.
    """
    from safetensors.numpy import save_file

    grams: list[str | None] = [None] * len(model.index)
    for gram, row in model.index.items():
        if not 0 <= row < len(grams) or grams[row] is not None:
            raise ValueError(f"save_subword: n-gram {gram!r} has row {row}; rows must number 0..{len(grams) - 1}")
        grams[row] = gram
    if model.vectors.ndim != 2 or model.vectors.shape[0] != len(grams):
        raise ValueError(f"save_subword: {len(grams)} n-grams for vectors of shape {model.vectors.shape}")
    meta = {"low": model.low, "high": model.high, "iterations": model.iterations, "ngrams": grams}
    directory.mkdir(parents=True, exist_ok=True)
    with replacing(directory / SUBWORD_VECTORS) as tmp:
        save_file({_VECTORS_TENSOR: np.ascontiguousarray(model.vectors, dtype=np.float32)}, str(tmp))
    write_text_atomic(directory / SUBWORD_INDEX, json.dumps(meta, ensure_ascii=False) + "\n")


def load_subword(directory: Path) -> SubwordModel:
    """Read a model written by :func:`save_subword`.

    Raises:
        InputError: a missing or malformed file, or n-grams that do not match the vectors' rows.
    """
    from safetensors import safe_open

    index_path, vectors_path = directory / SUBWORD_INDEX, directory / SUBWORD_VECTORS
    for path in (index_path, vectors_path):
        if not path.is_file():
            raise InputError(path, "file not found", hint="expected a subword model written by save_subword")
    try:
        meta = json.loads(index_path.read_text(encoding="utf-8"))
        grams, low, high, iterations = meta["ngrams"], int(meta["low"]), int(meta["high"]), int(meta["iterations"])
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(index_path, f"not a subword index: {err}") from None
    if not isinstance(grams, list) or not all(isinstance(g, str) for g in grams):
        raise InputError(index_path, "ngrams must be a list of strings")
    index = {gram: row for row, gram in enumerate(grams)}
    if len(index) != len(grams):
        raise InputError(index_path, "an n-gram appears twice")
    try:
        with safe_open(str(vectors_path), framework="np") as f:
            vectors = f.get_tensor(_VECTORS_TENSOR)
    except Exception as err:  # safetensors raises its own SafetensorError
        raise InputError(vectors_path, f"no readable tensor {_VECTORS_TENSOR!r}: {err}") from None
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[0] != len(grams):
        raise InputError(vectors_path, f"vectors are {vectors.dtype} {vectors.shape}, "
                         f"expected float32 ({len(grams)}, dim) for the n-grams of {index_path.name}")
    return SubwordModel(index, vectors, low, high, iterations)
