"""The subword fit's solver: its Nystrom preconditioner and its sparse products into reused arrays."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import pipeline.subword as subword_module
from pipeline.subword import fit_subword, leading_directions, ngram_matrix, nystrom_preconditioner, sparse_product

PREFIXES = ("", "pre", "re", "un", "sub", "over", "inter", "de")
STEMS = ("load", "read", "writ", "pars", "compil", "link", "call", "bind", "form", "port", "scan", "lock",
         "mount", "sort", "merg", "split", "hash", "cach", "queu", "stack")
SUFFIXES = ("", "s", "er", "ers", "ing", "ed", "able", "ation")


def vocabulary() -> tuple[list[str], np.ndarray]:
    """1,280 affixed words whose n-grams overlap as a real vocabulary's do, with random rows."""
    tokens = [p + s + x for p in PREFIXES for s in STEMS for x in SUFFIXES]
    return tokens, np.random.default_rng(0).normal(size=(len(tokens), 16)).astype(np.float32)


def test_preconditioned_fit_solves_the_same_system_in_fewer_iterations() -> None:
    tokens, vectors = vocabulary()
    plain = fit_subword(tokens, vectors, ridge=0.02, tolerance=1e-3, max_iterations=500, preconditioner_rank=0)
    sketched = fit_subword(tokens, vectors, ridge=0.02, tolerance=1e-3, max_iterations=500, preconditioner_rank=50)
    assert plain.index == sketched.index
    np.testing.assert_allclose(sketched.vectors, plain.vectors, atol=2e-3 * np.abs(plain.vectors).max())
    assert sketched.iterations < 0.75 * plain.iterations, (sketched.iterations, plain.iterations)


def test_a_sketch_as_large_as_the_vocabulary_solves_in_one_step() -> None:
    tokens, vectors = vocabulary()
    tokens, vectors = tokens[:40], vectors[:40]
    exact = fit_subword(tokens, vectors, ridge=0.02, tolerance=1e-4, preconditioner_rank=len(tokens))
    assert exact.iterations <= 2
    x, _ = ngram_matrix(sorted(tokens), {}, 3, 6, grow=True)
    order = sorted(range(len(tokens)), key=tokens.__getitem__)
    z = np.linalg.solve((x @ x.T).toarray() + 0.02 * np.eye(len(tokens)), vectors[order])
    np.testing.assert_allclose(exact.vectors, x.T @ z, atol=1e-3)


def test_a_rank_fits_the_rows_projection_on_their_leading_directions() -> None:
    tokens, vectors = vocabulary()
    vectors = vectors * np.geomspace(4.0, 0.25, vectors.shape[1]).astype(np.float32)  # directions of unequal weight
    directions = leading_directions(vectors, 6)
    assert directions is not None and directions.shape == (16, 6)
    np.testing.assert_allclose(directions.T @ directions, np.eye(6), atol=1e-5)
    # the same subspace as the SVD's six leading right singular vectors
    _, _, vt = np.linalg.svd(vectors.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(directions @ directions.T, vt[:6].T @ vt[:6], atol=1e-5)
    low = fit_subword(tokens, vectors, ridge=0.02, tolerance=1e-5, max_iterations=500, rank=6)
    projected = fit_subword(tokens, vectors @ directions @ directions.T, ridge=0.02, tolerance=1e-5,
                            max_iterations=500)
    np.testing.assert_allclose(low.vectors, projected.vectors, atol=1e-4 * np.abs(projected.vectors).max())
    dropped = vt[6:].T.astype(np.float32)  # nothing of the weaker directions is predicted
    assert np.abs(low.vectors @ dropped).max() < 1e-4 * np.abs(low.vectors).max()
    assert np.abs(fit_subword(tokens, vectors).vectors @ dropped).max() > 0.1 * np.abs(low.vectors).max()


def test_a_rank_of_zero_or_the_dimension_fits_the_rows_as_they_are() -> None:
    tokens, vectors = vocabulary()
    assert leading_directions(vectors, 0) is None and leading_directions(vectors, 16) is None
    full = fit_subword(tokens, vectors)
    for rank in (0, 16, 100):
        np.testing.assert_array_equal(fit_subword(tokens, vectors, rank=rank).vectors, full.vectors)


def test_preconditioner_is_the_nystrom_inverse_and_positive_definite() -> None:
    tokens, _ = vocabulary()
    x, _ = ngram_matrix(tokens, {}, 3, 6, grow=True)
    ridge = 0.02
    pre = nystrom_preconditioner(x, x.T.tocsr(), ridge, 30)
    assert pre is not None and pre.basis.shape == (len(tokens), 30)
    np.testing.assert_allclose(pre.basis.T @ pre.basis, np.eye(30), atol=1e-4)
    assert np.all(pre.shrink >= 0) and np.all(pre.shrink < 1) and np.all(np.diff(pre.shrink) <= 1e-6)
    # the sketch found the largest eigenvalues of X X^T: its top one within 1% of the true one
    gram = (x @ x.T).toarray()
    top = np.linalg.eigvalsh(gram)[-1]
    rayleigh = float(pre.basis[:, 0] @ gram @ pre.basis[:, 0])
    assert rayleigh == pytest.approx(top, rel=1e-2)
    dense = np.eye(len(tokens), dtype=np.float32) - pre.basis @ np.diag(pre.shrink) @ pre.basis.T
    v = np.random.default_rng(1).normal(size=(len(tokens), 3)).astype(np.float32)
    np.testing.assert_allclose(pre.apply(v, np.empty_like(v)), dense @ v, atol=1e-5)
    assert np.linalg.eigvalsh(dense.astype(np.float64)).min() > 0


def test_no_preconditioner_for_rank_zero() -> None:
    x, _ = ngram_matrix(["alpha", "beta"], {}, 3, 6, grow=True)
    assert nystrom_preconditioner(x, x.T.tocsr(), 0.02, 0) is None


def test_fit_is_the_same_with_and_without_scipys_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens, vectors = vocabulary()
    kernel = fit_subword(tokens, vectors)
    monkeypatch.setattr(subword_module, "_csr_matvecs", None)
    fallback = fit_subword(tokens, vectors)
    assert kernel.iterations == fallback.iterations
    np.testing.assert_array_equal(kernel.vectors, fallback.vectors)


def test_sparse_product_writes_into_out_and_overwrites_it() -> None:
    rng = np.random.default_rng(2)
    matrix = sp.random(30, 50, density=0.2, random_state=3, format="csr", dtype=np.float32)
    dense = rng.normal(size=(50, 4)).astype(np.float32)
    out = np.full((30, 4), 7.0, dtype=np.float32)  # stale values must not leak into the product
    assert sparse_product(matrix, dense, out) is out
    np.testing.assert_allclose(out, matrix @ dense, rtol=1e-6)
    strided = np.asfortranarray(dense)  # not C-contiguous: the public route
    out.fill(7.0)
    np.testing.assert_allclose(sparse_product(matrix, strided, out), matrix @ dense, rtol=1e-6)
    out.fill(7.0)  # float64 input: the public route too (the kernel wants one dtype)
    np.testing.assert_allclose(sparse_product(matrix, dense.astype(np.float64), out), matrix @ dense,
                               rtol=1e-5, atol=1e-6)


def test_a_degenerate_sketch_gives_no_preconditioner() -> None:
    empty = sp.csr_matrix((4, 6), dtype=np.float32)  # X X^T = 0: nothing to sketch
    assert nystrom_preconditioner(empty, empty.T.tocsr(), 0.02, 3) is None
