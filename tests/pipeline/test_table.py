"""EmbeddingTable: tokens, fixed row indices, a read-only float32 matrix, its checksum, append-only growth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from pipeline.table import EmbeddingTable

TOKENS = ("alpha", "beta", "gamma")


def _matrix() -> npt.NDArray[np.float32]:
    return (np.arange(6, dtype=np.float32).reshape(3, 2) / 4).astype(np.float32)


@pytest.fixture
def table() -> EmbeddingTable:
    return EmbeddingTable(list(TOKENS), _matrix())


def test_tokens_indices_and_vectors(table: EmbeddingTable) -> None:
    assert table.tokens == TOKENS
    assert [table.index_of(t) for t in TOKENS] == [0, 1, 2]
    assert len(table) == 3 and table.dim == 2
    assert "beta" in table and "delta" not in table
    np.testing.assert_array_equal(table.vector("gamma"), [1.0, 1.25])
    np.testing.assert_array_equal(table.indices(["gamma", "nope", "alpha"]), [2, -1, 0])


def test_index_of_a_missing_token_names_it(table: EmbeddingTable) -> None:
    with pytest.raises(KeyError, match=r"token 'delta' not in table"):
        table.index_of("delta")


def test_matrix_is_float32_and_read_only(table: EmbeddingTable) -> None:
    matrix = table.matrix
    assert matrix.dtype == np.float32 and matrix.shape == (3, 2)
    with pytest.raises(ValueError, match="read-only"):
        matrix[0, 0] = 99.0
    with pytest.raises(ValueError, match="read-only"):
        table.vector("alpha")[:] = 0.0
    np.testing.assert_array_equal(table.matrix, _matrix())


def test_tokens_cannot_be_changed_through_the_property(table: EmbeddingTable) -> None:
    with pytest.raises((TypeError, AttributeError)):
        table.tokens[0] = "omega"  # type: ignore[index]
    assert table.tokens[0] == "alpha"


@pytest.mark.parametrize(
    ("tokens", "matrix", "message"),
    [
        (["a", "b"], np.zeros((2, 3), dtype=np.float64), "matrix must be float32, got float64"),
        (["a", "b"], np.zeros(6, dtype=np.float32), r"matrix must be 2-D, got shape \(6,\)"),
        (["a"], np.zeros((2, 3), dtype=np.float32), "1 tokens for 2 rows"),
        (["a", "b", "a"], np.zeros((3, 3), dtype=np.float32), "token 'a' appears at rows 0 and 2"),
    ],
)
def test_constructor_rejects_bad_tables(tokens: list[str], matrix: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmbeddingTable(tokens, matrix, source="emb.txt")


def test_checksum_is_stable(table: EmbeddingTable) -> None:
    # sha256 over "rows dim\n", the tokens joined by "\n", a NUL and the little-endian float32 rows.
    # Manifests record this value: a change here breaks tracing of every exported table.
    assert table.checksum == "9961ed2f5f9898510cfaeb4f53253a50e8a93fde30a48dd812235f4024247f4b"
    assert EmbeddingTable(list(TOKENS), _matrix().copy()).checksum == table.checksum


def test_checksum_changes_with_a_value_or_a_token(table: EmbeddingTable) -> None:
    changed = _matrix()
    changed[2, 1] = np.nextafter(changed[2, 1], np.float32(2))  # one ulp
    assert EmbeddingTable(list(TOKENS), changed).checksum != table.checksum
    assert EmbeddingTable(["alpha", "beta", "delta"], _matrix()).checksum != table.checksum
    assert table.append(["delta"], np.zeros((1, 2))).checksum != table.checksum


def test_checksum_does_not_depend_on_memory_layout(table: EmbeddingTable) -> None:
    fortran = np.asfortranarray(_matrix())
    assert EmbeddingTable(list(TOKENS), fortran).checksum == table.checksum


def test_append_adds_rows_at_the_end_and_keeps_every_index(table: EmbeddingTable) -> None:
    grown = table.append(["delta", "epsilon"], np.array([[1, 2], [3, 4]], dtype=np.float64))
    assert grown.tokens == (*TOKENS, "delta", "epsilon")
    assert [grown.index_of(t) for t in TOKENS] == [0, 1, 2]
    assert grown.index_of("epsilon") == 4
    assert grown.matrix.dtype == np.float32
    np.testing.assert_array_equal(grown.matrix[:3], _matrix())
    np.testing.assert_array_equal(grown.matrix[3:], [[1, 2], [3, 4]])
    # the original is untouched
    assert len(table) == 3 and "delta" not in table


def test_append_rejects_a_token_already_in_the_table(table: EmbeddingTable) -> None:
    with pytest.raises(ValueError, match=r"token 'beta' already in table at row 1"):
        table.append(["delta", "beta"], np.zeros((2, 2)))


def test_append_rejects_a_token_given_twice(table: EmbeddingTable) -> None:
    with pytest.raises(ValueError, match=r"token 'delta' given twice"):
        table.append(["delta", "delta"], np.zeros((2, 2)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
def test_append_rejects_a_value_that_is_not_finite_in_float32(table: EmbeddingTable, bad: float) -> None:
    vectors = np.zeros((2, 2), dtype=np.float64)
    vectors[1, 0] = bad  # 1e39 is finite in float64 but inf once stored as float32
    with pytest.raises(ValueError, match=r"vector of 'epsilon' is not finite"):
        table.append(["delta", "epsilon"], vectors)


def test_append_rejects_a_wrong_shape(table: EmbeddingTable) -> None:
    with pytest.raises(ValueError, match=r"expected vectors of shape \(2, 2\), got \(2, 3\)"):
        table.append(["delta", "epsilon"], np.zeros((2, 3)))


def test_append_rejects_a_bare_string(table: EmbeddingTable) -> None:
    with pytest.raises(TypeError, match="got the string 'xy'"):
        table.append("xy", np.zeros((2, 2)))


def test_head_is_the_first_rows(table: EmbeddingTable) -> None:
    head = table.head(2)
    assert head.tokens == TOKENS[:2]
    np.testing.assert_array_equal(head.matrix, _matrix()[:2])


def test_row_blocks_cover_every_row_and_memory_maps_stay_readable(tmp_path: Path) -> None:
    from pipeline.table import row_blocks

    matrix = np.arange(1000 * 8, dtype=np.float32).reshape(1000, 8)
    np.save(tmp_path / "m.npy", matrix)
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    seen = [(start, block.copy()) for start, block in row_blocks(mapped, 300)]
    assert [start for start, _ in seen] == [0, 300, 600, 900]
    np.testing.assert_array_equal(np.concatenate([b for _, b in seen]), matrix)
    np.testing.assert_array_equal(mapped, matrix)  # released pages map again from the file
    # a writable map is never released: its unsaved changes survive a pass
    writable = np.load(tmp_path / "m.npy", mmap_mode="r+")
    writable[5] = -1.0
    assert sum(len(block) for _, block in row_blocks(writable, 300)) == 1000
    assert (writable[5] == -1.0).all()
