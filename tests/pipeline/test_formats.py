"""Loading and saving tables: every format, the parse cache, bad input and atomic writes."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import stat
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf
from safetensors.numpy import save_file

import pipeline.formats as formats
from pipeline.errors import InputError
from pipeline.formats import LoadOptions, detect_format, load_table, save_table
from pipeline.formats import text as text_format
from pipeline.table import EmbeddingTable

TOKENS = ["the", "kernel", "ioctl", "jsonb", "vacuum"]
DIM = 4

Options = Callable[..., LoadOptions]


@pytest.fixture
def options(tmp_path: Path) -> Options:
    """LoadOptions that cache under tmp_path and show no progress bars."""

    def make(**kwargs: object) -> LoadOptions:
        kwargs = {"cache_dir": str(tmp_path / "cache"), "progress": False, **kwargs}
        return LoadOptions(**kwargs)  # type: ignore[arg-type]

    return make


def vectors(rows: int = len(TOKENS), dim: int = DIM, seed: int = 0) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def text_lines(tokens: Sequence[str], matrix: np.ndarray, *, end: str = "\n") -> list[str]:
    return [f"{t} {' '.join(f'{v:.9g}' for v in row)}{end}" for t, row in zip(tokens, matrix, strict=True)]


def write_text_table(
    path: Path, lines: Sequence[str], *, header: str | None = None, gz: bool = False
) -> Path:
    """Write a text table from literal lines (each with its own line end)."""
    data = ((header + "\n") if header is not None else "") + "".join(lines)
    if gz:
        path.write_bytes(gzip.compress(data.encode("utf-8")))
    else:
        path.write_bytes(data.encode("utf-8"))
    return path


def write_w2v(path: Path, tokens: Sequence[str] = TOKENS, matrix: np.ndarray | None = None) -> Path:
    """A word2vec text table with a correct header."""
    matrix = vectors(len(tokens)) if matrix is None else matrix
    return write_text_table(path, text_lines(tokens, matrix), header=f"{len(tokens)} {matrix.shape[1]}")


def write_bin(
    path: Path, tokens: Sequence[bytes | str], matrix: np.ndarray, *, rows: int | None = None
) -> Path:
    """A word2vec binary file as word2vec's C tool writes it (a newline after each vector)."""
    out = f"{len(tokens) if rows is None else rows} {matrix.shape[1]}\n".encode()
    for token, row in zip(tokens, matrix, strict=True):
        raw = token.encode() if isinstance(token, str) else token
        out += raw + b" " + np.asarray(row, dtype="<f4").tobytes() + b"\n"
    path.write_bytes(out)
    return path


def write_npy(path: Path, tokens: Sequence[str], matrix: np.ndarray) -> Path:
    np.save(path, matrix)
    path.with_suffix(".vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path


@contextmanager
def input_error(path: Path, line: int | None, *fragments: str) -> Iterator[None]:
    """Expect an InputError whose message starts with ``path[:line]: `` and holds every fragment."""
    with pytest.raises(InputError) as caught:
        yield
    message = str(caught.value)
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert message.startswith(where), message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message


# -- formats -------------------------------------------------------------------------------------


def test_word2vec_text(tmp_path: Path, options: Options) -> None:
    matrix = vectors()
    path = write_w2v(tmp_path / "emb.txt", matrix=matrix)
    assert detect_format(path) == "word2vec_text"
    table = load_table(path, options())
    assert table.tokens == tuple(TOKENS)
    assert table.matrix.dtype == np.float32
    np.testing.assert_array_equal(table.matrix, matrix)  # %.9g is exact for float32


def test_fasttext_vec_with_a_trailing_space_on_every_line(tmp_path: Path, options: Options) -> None:
    matrix = vectors()
    path = write_text_table(tmp_path / "cc.en.vec", text_lines(TOKENS, matrix, end=" \n"), header=f"5 {DIM}")
    assert path.read_bytes().count(b" \n") == 5
    assert detect_format(path) == "word2vec_text"
    table = load_table(path, options())
    assert table.tokens == tuple(TOKENS) and table.dim == DIM
    np.testing.assert_array_equal(table.matrix, matrix)


def test_windows_line_ends(tmp_path: Path, options: Options) -> None:
    matrix = vectors()
    path = write_text_table(tmp_path / "emb.txt", text_lines(TOKENS, matrix, end="\r\n"), header=f"5 {DIM}\r")
    table = load_table(path, options())
    assert table.tokens == tuple(TOKENS)
    np.testing.assert_array_equal(table.matrix, matrix)


def test_glove_without_a_header(tmp_path: Path, options: Options) -> None:
    matrix = vectors()
    path = write_text_table(tmp_path / "glove.6B.4d.txt", text_lines(TOKENS, matrix))
    assert detect_format(path) == "glove"
    table = load_table(path, options())
    assert table.tokens == tuple(TOKENS)
    np.testing.assert_array_equal(table.matrix, matrix)
    # the same file read as word2vec text is refused, with a hint
    with input_error(path, 1, "expected a header 'ROWS DIM'", "embedding.format=glove"):
        load_table(path, options(format="word2vec_text"))


@pytest.mark.parametrize("fmt", ["word2vec_text", "glove"])
def test_gzip_compressed_text(tmp_path: Path, options: Options, fmt: str) -> None:
    matrix = vectors()
    header = f"5 {DIM}" if fmt == "word2vec_text" else None
    path = write_text_table(tmp_path / "emb.txt.gz", text_lines(TOKENS, matrix), header=header, gz=True)
    assert detect_format(path) == fmt
    table = load_table(path, options())
    assert table.tokens == tuple(TOKENS)
    np.testing.assert_array_equal(table.matrix, matrix)


def test_word2vec_binary(tmp_path: Path, options: Options) -> None:
    matrix = vectors()
    path = write_bin(tmp_path / "emb.bin", TOKENS, matrix)
    assert detect_format(path) == "word2vec_binary"
    table = load_table(path, options())
    assert table.tokens == tuple(TOKENS)
    np.testing.assert_array_equal(table.matrix, matrix)


def test_binary_is_recognised_by_content_without_a_bin_extension(tmp_path: Path, options: Options) -> None:
    # all-zero vectors are NUL bytes: valid UTF-8, but not text values
    matrix = np.zeros((5, DIM), dtype=np.float32)
    path = write_bin(tmp_path / "emb.w2v", TOKENS, matrix)
    assert detect_format(path) == "word2vec_binary"
    table = load_table(path, options())
    assert table.tokens == tuple(TOKENS)
    np.testing.assert_array_equal(table.matrix, matrix)


def test_text_with_an_undecodable_token_is_still_text(tmp_path: Path, options: Options) -> None:
    path = tmp_path / "emb.txt"
    path.write_bytes(b"2 2\ncaf\xe9 0.5 1\ntea 2 3\n")
    assert detect_format(path) == "word2vec_text"
    table = load_table(path, options(unicode_errors="replace"))
    assert table.tokens == ("caf\ufffd", "tea")
    np.testing.assert_array_equal(table.matrix, [[0.5, 1], [2, 3]])


def test_text_with_a_long_first_token_is_still_text(tmp_path: Path, options: Options) -> None:
    token = "x" * 3000
    path = write_w2v(tmp_path / "emb.vec", [token, "b"], vectors(2))
    assert detect_format(path) == "word2vec_text"
    assert load_table(path, options()).tokens == (token, "b")


def test_npy_is_memory_mapped_with_tokens_beside_it(tmp_path: Path, options: Options) -> None:
    matrix = vectors()
    path = write_npy(tmp_path / "emb.npy", TOKENS, matrix)
    assert detect_format(path) == "npy"
    table = load_table(path, options())
    assert isinstance(table.matrix, np.memmap)
    assert table.tokens == tuple(TOKENS)
    np.testing.assert_array_equal(table.matrix, matrix)


def test_npy_object_array_is_refused_not_unpickled(tmp_path: Path, options: Options) -> None:
    path = tmp_path / "evil.npy"
    np.save(path, np.array([["a", 1]], dtype=object), allow_pickle=True)
    path.with_suffix(".vocab.txt").write_text("a\n")
    with input_error(path, None, "not a plain .npy matrix", "Python objects", "allow_pickle=False"):
        load_table(path, options())


def test_npy_tokens_file_must_match_the_rows(tmp_path: Path, options: Options) -> None:
    path = write_npy(tmp_path / "emb.npy", TOKENS, vectors())
    vocab = path.with_suffix(".vocab.txt")
    vocab.write_text("the\nkernel\n")
    with input_error(vocab, None, "2 tokens for 5 rows"):
        load_table(path, options())
    vocab.unlink()
    with input_error(vocab, None, "tokens file not found", "embedding.vocab_path"):
        load_table(path, options())


def test_npy_with_a_nan_is_refused(tmp_path: Path, options: Options) -> None:
    matrix = vectors()
    matrix[3, 1] = np.nan
    path = write_npy(tmp_path / "emb.npy", TOKENS, matrix)
    with input_error(path, None, "row 3 ('jsonb') has a NaN or Inf value"):
        load_table(path, options())


BERT_VOCAB = ["[PAD]", "[unused1]", "the", "##ing", "kernel", "[CLS]", "##s", "vacuum"]


def write_bert_like(tmp_path: Path) -> tuple[Path, npt.NDArray[np.float32]]:
    """A safetensors model with two tensors and a Hugging Face vocab.txt beside it."""
    matrix = vectors(len(BERT_VOCAB))
    path = tmp_path / "model.safetensors"
    save_file({"embeddings.word_embeddings.weight": matrix,
               "embeddings.position_embeddings.weight": vectors(3, seed=1)}, str(path))
    (tmp_path / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n", encoding="utf-8")
    return path, matrix


def test_safetensors_named_tensor(tmp_path: Path, options: Options) -> None:
    path, matrix = write_bert_like(tmp_path)
    assert detect_format(path) == "safetensors"
    table = load_table(path, options(tensor="embeddings.word_embeddings.weight"))
    assert table.tokens == tuple(BERT_VOCAB)
    np.testing.assert_array_equal(table.matrix, matrix)


def test_safetensors_needs_a_tensor_name_when_it_holds_several(tmp_path: Path, options: Options) -> None:
    path, _ = write_bert_like(tmp_path)
    with input_error(path, None, "holds 2 tensors", "embeddings.word_embeddings.weight"):
        load_table(path, options())
    with input_error(path, None, "no tensor 'nope'", "embeddings.position_embeddings.weight"):
        load_table(path, options(tensor="nope"))


def test_token_filter_keeps_whole_words(tmp_path: Path, options: Options) -> None:
    path, matrix = write_bert_like(tmp_path)
    table = load_table(path, options(tensor="embeddings.word_embeddings.weight", token_filter=r"[a-z]+"))
    assert table.tokens == ("the", "kernel", "vacuum")  # no '##' pieces, no '[unused1]' slots
    np.testing.assert_array_equal(table.matrix, matrix[[2, 4, 7]])
    # the limit counts rows of the filtered table
    limited = load_table(
        path, options(tensor="embeddings.word_embeddings.weight", token_filter=r"[a-z]+", limit=2)
    )
    assert limited.tokens == ("the", "kernel")
    with input_error(path, None, "no token matches embedding.token_filter='[0-9]+'"):
        load_table(path, options(tensor="embeddings.word_embeddings.weight", token_filter=r"[0-9]+"))


@pytest.mark.parametrize("name", ["emb.txt", "glove.txt", "emb.bin", "emb.npy", "emb.safetensors"])
def test_limit_loads_the_first_rows(tmp_path: Path, options: Options, name: str) -> None:
    matrix = vectors()
    path = tmp_path / name
    if name == "emb.txt":
        write_w2v(path, matrix=matrix)
    elif name == "glove.txt":
        write_text_table(path, text_lines(TOKENS, matrix))
    elif name == "emb.bin":
        write_bin(path, TOKENS, matrix)
    elif name == "emb.npy":
        write_npy(path, TOKENS, matrix)
    else:
        save_file({"embeddings": matrix}, str(path))
        path.with_suffix(".vocab.txt").write_text("\n".join(TOKENS) + "\n")
    table = load_table(path, options(limit=2))
    assert table.tokens == tuple(TOKENS[:2])
    np.testing.assert_array_equal(table.matrix, matrix[:2])
    # a limit past the end loads everything
    assert len(load_table(path, options(limit=50))) == 5


# -- sha256 --------------------------------------------------------------------------------------


def test_sha256_right_one_passes_wrong_one_fails(tmp_path: Path, options: Options) -> None:
    path = write_w2v(tmp_path / "emb.txt")
    right = hashlib.sha256(path.read_bytes()).hexdigest()
    wrong = "0" * 64
    assert len(load_table(path, options(sha256=right))) == 5
    assert len(load_table(path, options(sha256=right.upper()))) == 5  # served from the cache, still checked
    with input_error(path, None, f"sha256 is {right}, expected {wrong}", "embedding.sha256"):
        load_table(path, options(sha256=wrong))  # a cache hit does not skip the check
    with input_error(path, None, f"sha256 is {right}, expected {wrong}"):
        load_table(path, options(sha256=wrong, cache=False))


@pytest.mark.parametrize("name", ["emb.bin", "emb.npy"])
def test_sha256_of_binary_formats(tmp_path: Path, options: Options, name: str) -> None:
    path = tmp_path / name
    write_bin(path, TOKENS, vectors()) if name == "emb.bin" else write_npy(path, TOKENS, vectors())
    right = hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(load_table(path, options(sha256=right))) == 5
    with input_error(path, None, f"sha256 is {right}, expected {'a' * 64}"):
        load_table(path, options(sha256="a" * 64))


def test_sha256_is_checked_before_parsing(tmp_path: Path, options: Options) -> None:
    # a wrong file gets the checksum error (the real cause), not whatever its content breaks
    path = write_text_table(tmp_path / "emb.txt", ["the 1 2\n", "tea 3 x\n"], header="2 2")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with input_error(path, None, f"sha256 is {actual}, expected {'b' * 64}"):
        load_table(path, options(sha256="b" * 64))


# -- the parse cache -----------------------------------------------------------------------------


def cache_entries(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "tables").glob("*.json"))


def test_second_load_of_a_text_table_is_served_from_the_cache(tmp_path: Path, options: Options) -> None:
    matrix = vectors()
    path = write_w2v(tmp_path / "emb.txt", matrix=matrix)
    first = load_table(path, options())
    assert not isinstance(first.matrix, np.memmap)
    assert len(cache_entries(tmp_path)) == 1
    second = load_table(path, options())
    assert isinstance(second.matrix, np.memmap)
    assert second.tokens == first.tokens
    np.testing.assert_array_equal(second.matrix, matrix)
    assert second.checksum == first.checksum
    assert len(cache_entries(tmp_path)) == 1


def test_changing_or_touching_the_file_invalidates_the_cache(tmp_path: Path, options: Options) -> None:
    path = write_w2v(tmp_path / "emb.txt", matrix=vectors(seed=0))
    load_table(path, options())
    assert isinstance(load_table(path, options()).matrix, np.memmap)
    # new content of the same size and the same mtime would not be seen; a real edit changes the mtime
    mtime = path.stat().st_mtime_ns
    write_w2v(path, matrix=vectors(seed=1))
    os.utime(path, ns=(mtime + 5_000_000_000, mtime + 5_000_000_000))
    reloaded = load_table(path, options())
    assert not isinstance(reloaded.matrix, np.memmap)
    np.testing.assert_array_equal(reloaded.matrix, vectors(seed=1))
    # touching alone also invalidates
    os.utime(path, ns=(mtime + 9_000_000_000, mtime + 9_000_000_000))
    assert not isinstance(load_table(path, options()).matrix, np.memmap)
    assert len(cache_entries(tmp_path)) == 3


def test_cache_can_be_turned_off(tmp_path: Path, options: Options) -> None:
    path = write_w2v(tmp_path / "emb.txt")
    load_table(path, options(cache=False))
    assert not isinstance(load_table(path, options(cache=False)).matrix, np.memmap)
    assert not (tmp_path / "cache").exists()


def test_cache_keeps_tokens_that_hold_a_carriage_return(tmp_path: Path, options: Options) -> None:
    path = tmp_path / "emb.txt"
    path.write_bytes(b"2 2\nwin\rdows 1 2\nlinux 3 4\n")
    assert load_table(path, options()).tokens == ("win\rdows", "linux")
    cached = load_table(path, options())
    assert isinstance(cached.matrix, np.memmap)
    assert cached.tokens == ("win\rdows", "linux")


def test_cache_keeps_the_line_numbers_of_duplicates(tmp_path: Path, options: Options) -> None:
    path = write_text_table(tmp_path / "emb.txt", ["a 1 2\n", "b 3 4\n", "a 5 6\n"], header="3 2")
    for _ in range(2):  # the first parse and the cache hit report the same lines
        with input_error(path, 4, "duplicate token 'a' at line 4, first at line 2"):
            load_table(path, options())
    assert len(cache_entries(tmp_path)) == 1


# -- bad input -----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path, options: Options) -> None:
    path = tmp_path / "nope.txt"
    with input_error(path, None, "file not found", "embedding.path"):
        load_table(path, options())


def test_empty_file(tmp_path: Path, options: Options) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with input_error(path, None, "file is empty"):
        load_table(path, options())


def test_header_says_fewer_rows_than_the_file_has(tmp_path: Path, options: Options) -> None:
    path = write_text_table(tmp_path / "emb.txt", text_lines(TOKENS[:3], vectors(3)), header=f"2 {DIM}")
    with input_error(path, 4, "more rows than the header's 2", "fix the header's row count"):
        load_table(path, options())


def test_extra_rows_are_found_past_a_block_boundary(
    tmp_path: Path, options: Options, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tiny blocks: the header's rows end a block and the extra row is in the next one
    lines = ["a 1 2\n", "b 3 4\n", "c 5 6\n"]
    path = write_text_table(tmp_path / "emb.txt", lines, header="2 2")
    monkeypatch.setattr(text_format, "BLOCK_BYTES", len("2 2\na 1 2\nb 3 4\n") - len("2 2\n"))
    with input_error(path, 4, "more rows than the header's 2"):
        load_table(path, options())


def test_header_says_more_rows_than_the_file_has(tmp_path: Path, options: Options) -> None:
    path = write_text_table(tmp_path / "emb.txt", text_lines(TOKENS, vectors()), header=f"7 {DIM}")
    with input_error(path, 1, "header says 7 rows, file has 5", "cut short"):
        load_table(path, options())


def test_header_dimension_wrong(tmp_path: Path, options: Options) -> None:
    path = write_text_table(tmp_path / "emb.txt", text_lines(TOKENS, vectors()), header=f"5 {DIM + 1}")
    with input_error(path, 2, f"too few values: expected {DIM + 1}, found {DIM}"):
        load_table(path, options())


def test_header_with_zero_rows(tmp_path: Path, options: Options) -> None:
    path = write_text_table(tmp_path / "emb.txt", [], header="0 4")
    with input_error(path, 1, "header says 0 rows of dimension 4"):
        load_table(path, options(format="word2vec_text"))


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("ioctl 1 2 3\n", "too few values: expected 4, found 3"),
        ("ioctl 1 2 3 4 5\n", "too many values: expected 4, found 5"),
    ],
)
@pytest.mark.parametrize("header", [True, False])
def test_row_with_the_wrong_number_of_values(
    tmp_path: Path, options: Options, bad_line: str, problem: str, header: bool
) -> None:
    lines = text_lines(TOKENS, vectors())
    lines[2] = bad_line
    path = write_text_table(tmp_path / "emb.txt", lines, header=f"5 {DIM}" if header else None)
    with input_error(path, 4 if header else 3, problem):
        load_table(path, options())


def test_non_numeric_value_names_the_line_and_the_value(tmp_path: Path, options: Options) -> None:
    lines = text_lines(TOKENS, vectors())
    lines[3] = "jsonb 0.1 0.2 abc 0.4\n"
    path = write_text_table(tmp_path / "emb.txt", lines, header=f"5 {DIM}")
    with input_error(path, 5, "value 'abc' is not a number"):
        load_table(path, options())


def test_non_numeric_value_line_is_right_in_a_later_block(
    tmp_path: Path, options: Options, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = text_lines(TOKENS, vectors())
    lines[4] = "vacuum 0.1 x1 0.3 0.4\n"
    path = write_text_table(tmp_path / "glove.txt", lines)
    monkeypatch.setattr(text_format, "BLOCK_BYTES", 40)
    with input_error(path, 5, "value 'x1' is not a number"):
        load_table(path, options())


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf", "1e39"])
def test_nan_or_inf_names_the_line(tmp_path: Path, options: Options, bad: str) -> None:
    lines = text_lines(TOKENS, vectors())
    lines[1] = f"kernel 0.5 {bad} 0.5 0.5\n"
    path = write_text_table(tmp_path / "emb.txt", lines, header=f"5 {DIM}")
    with input_error(path, 3, "row of 'kernel' has a NaN or Inf value"):
        load_table(path, options())


def test_nan_in_a_binary_file_names_the_row(tmp_path: Path, options: Options) -> None:
    matrix = vectors()
    matrix[2, 0] = np.inf
    path = write_bin(tmp_path / "emb.bin", TOKENS, matrix)
    with input_error(path, None, "row 2 ('ioctl') has a NaN or Inf value"):
        load_table(path, options())


def test_blank_line_inside_the_table(tmp_path: Path, options: Options) -> None:
    lines = text_lines(TOKENS, vectors())
    lines.insert(2, "\n")
    path = write_text_table(tmp_path / "glove.txt", lines)
    with input_error(path, 3, "empty line"):
        load_table(path, options())


def test_blank_lines_at_the_end_are_fine(tmp_path: Path, options: Options) -> None:
    path = write_text_table(tmp_path / "glove.txt", [*text_lines(TOKENS, vectors()), "\n", "\n"])
    assert len(load_table(path, options())) == 5


def test_duplicate_token_is_an_error_naming_both_lines(tmp_path: Path, options: Options) -> None:
    lines = text_lines(TOKENS, vectors())
    lines[3] = lines[1]  # 'kernel' at lines 3 and 5
    path = write_text_table(tmp_path / "emb.txt", lines, header=f"5 {DIM}")
    with input_error(path, 5, "duplicate token 'kernel' at line 5, first at line 3", "on_duplicate=first"):
        load_table(path, options())


def test_duplicate_token_in_a_binary_file_names_both_rows(tmp_path: Path, options: Options) -> None:
    path = write_bin(tmp_path / "emb.bin", ["a", "b", "a"], vectors(3))
    with input_error(path, None, "duplicate token 'a' at row 2, first at row 0"):
        load_table(path, options())


def test_on_duplicate_first_keeps_the_first_row_and_warns(
    tmp_path: Path, options: Options, caplog: pytest.LogCaptureFixture
) -> None:
    matrix = vectors(6)
    tokens = [*TOKENS, "kernel"]
    path = write_w2v(tmp_path / "emb.txt", tokens, matrix)
    with caplog.at_level(logging.WARNING, logger="pipeline.formats"):
        table = load_table(path, options(on_duplicate="first"))
    assert table.tokens == tuple(TOKENS)
    np.testing.assert_array_equal(table.matrix, matrix[:5])
    np.testing.assert_array_equal(table.vector("kernel"), matrix[1])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("1 duplicate tokens" in w and "emb.txt" in w for w in warnings), warnings


def test_undecodable_token_in_a_binary_file_strict(tmp_path: Path, options: Options) -> None:
    path = write_bin(tmp_path / "emb.bin", [b"the", b"caf\xe9", b"tea"], vectors(3))
    with input_error(path, None, "token b'caf\\xe9' at row 1", "not valid UTF-8", "unicode_errors=replace"):
        load_table(path, options())


def test_undecodable_token_in_a_binary_file_replace(
    tmp_path: Path, options: Options, caplog: pytest.LogCaptureFixture
) -> None:
    matrix = vectors(4)
    path = write_bin(tmp_path / "emb.bin", [b"the", b"caf\xe9", b"tea", b"\xff\xfe"], matrix)
    with caplog.at_level(logging.WARNING, logger="pipeline.formats"):
        table = load_table(path, options(unicode_errors="replace"))
    assert table.tokens == ("the", "caf\ufffd", "tea", "\ufffd\ufffd")
    np.testing.assert_array_equal(table.matrix, matrix)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2 tokens had undecodable bytes" in w for w in warnings), warnings


def test_undecodable_token_in_a_text_file_names_the_line(tmp_path: Path, options: Options) -> None:
    path = tmp_path / "emb.txt"
    path.write_bytes(b"2 2\ntea 1 2\ncaf\xe9 0.5 1\n")
    with input_error(path, 3, "token b'caf\\xe9' at line 3 is not valid UTF-8"):
        load_table(path, options())


def test_truncated_binary_file_in_a_vector(tmp_path: Path, options: Options) -> None:
    path = write_bin(tmp_path / "emb.bin", TOKENS, vectors())
    path.write_bytes(path.read_bytes()[:-7])  # the last vector loses 6 of its 16 bytes (and the newline)
    with input_error(path, None, "truncated", "row 4 ('vacuum') has only 10 of its 16 bytes"):
        load_table(path, options())


def test_truncated_binary_file_missing_rows(tmp_path: Path, options: Options) -> None:
    path = write_bin(tmp_path / "emb.bin", TOKENS[:3], vectors(3), rows=5)
    with input_error(path, 1, "truncated: header says 5 rows of 4 float32 values, more than the file's"):
        load_table(path, options())


def test_binary_file_with_more_rows_than_its_header(tmp_path: Path, options: Options) -> None:
    path = write_bin(tmp_path / "emb.bin", TOKENS, vectors(), rows=3)
    with input_error(path, None, "more data after the header's 3 rows"):
        load_table(path, options())
    # with a limit, the rest of the file is not read
    assert len(load_table(path, options(limit=2))) == 2


def test_dimension_other_than_the_config_expects(tmp_path: Path, options: Options) -> None:
    path = write_w2v(tmp_path / "emb.txt")
    with input_error(path, 1, f"dimension is {DIM}, the config expects 300", "embedding.dim"):
        load_table(path, options(dim=300))  # read off the header, before parsing
    assert load_table(path, options(dim=DIM)).dim == DIM


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("limit", 0, "embedding.limit must be positive, got 0"),
        ("dim", -3, "embedding.dim must be positive, got -3"),
        ("format", "csv", "embedding.format must be auto or one of"),
        ("on_duplicate", "last", "embedding.on_duplicate must be error or first, got 'last'"),
        ("unicode_errors", "ignore", "embedding.unicode_errors must be strict or replace, got 'ignore'"),
        ("sha256", "abc", "embedding.sha256 must be 64 hex digits, got 'abc'"),
        ("token_filter", "([a-z]", "embedding.token_filter is not a regular expression"),
    ],
)
def test_invalid_load_options_name_the_option(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as caught:
        LoadOptions(**{field: value})  # type: ignore[arg-type]
    assert not isinstance(caught.value, InputError)


# -- save, and round trips -----------------------------------------------------------------------

ROUND_TRIP = [
    ("emb.w2v.txt", "word2vec_text", True),
    ("emb.glove.txt", "glove", False),
    ("emb.w2v.txt.gz", "word2vec_text", False),
    ("emb.glove.txt.gz", "glove", False),
    ("emb.bin", "word2vec_binary", True),
    ("emb.npy", "npy", True),
    ("emb.safetensors", "safetensors", True),
    ("emb.keras", "keras", True),
]


@pytest.fixture
def source_table(tmp_path: Path, options: Options) -> EmbeddingTable:
    """A table loaded from a file, with non-ASCII tokens and values across magnitudes."""
    tokens = ["the", "café", "日本", "ioctl", "-", "x"]
    matrix = vectors(len(tokens), dim=7, seed=3)
    matrix[0] *= 1e-30
    matrix[1] *= 1e30
    matrix[2, 0] = -0.0
    return load_table(write_bin(tmp_path / "source.bin", tokens, matrix), options())


@pytest.mark.parametrize(("name", "fmt", "exact"), ROUND_TRIP)
def test_round_trip(
    tmp_path: Path, options: Options, source_table: EmbeddingTable, name: str, fmt: str, exact: bool
) -> None:
    out = tmp_path / "out" / name
    save_table(source_table, out)
    assert detect_format(out) == fmt
    again = load_table(out, options(format="auto"))
    assert again.tokens == source_table.tokens
    assert again.matrix.dtype == np.float32
    if fmt in ("word2vec_binary", "npy", "safetensors", "keras"):
        np.testing.assert_array_equal(again.matrix, source_table.matrix)
        assert again.checksum == source_table.checksum
    else:
        np.testing.assert_allclose(again.matrix, source_table.matrix, rtol=1e-6, atol=1e-6)
    # and an explicit format gives the same table
    assert load_table(out, options(format=fmt)).tokens == source_table.tokens


def test_text_round_trip_is_in_fact_exact(
    tmp_path: Path, options: Options, source_table: EmbeddingTable
) -> None:
    out = tmp_path / "emb.txt"
    save_table(source_table, out)
    assert load_table(out, options()).checksum == source_table.checksum


def test_save_explicit_format_overrides_the_name(tmp_path: Path, options: Options) -> None:
    table = EmbeddingTable(TOKENS, vectors())
    out = tmp_path / "emb.txt"
    save_table(table, out, fmt="glove")
    assert not out.read_text().startswith("5 4")
    assert detect_format(out) == "glove"
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        save_table(table, tmp_path / "x.csv", fmt="csv")


def test_npy_and_safetensors_write_the_vocab_beside_the_matrix(tmp_path: Path) -> None:
    table = EmbeddingTable(["a\rb", "c"], vectors(2))  # a CR in a token survives the vocab file
    save_table(table, tmp_path / "emb.npy")
    save_table(table, tmp_path / "model.safetensors", tensor="word_embeddings")
    assert (tmp_path / "emb.vocab.txt").read_bytes() == b"a\rb\nc\n"
    assert (tmp_path / "model.vocab.txt").read_bytes() == b"a\rb\nc\n"
    loaded = load_table(tmp_path / "model.safetensors", LoadOptions(tensor="word_embeddings", progress=False))
    assert loaded.tokens == ("a\rb", "c")
    assert load_table(tmp_path / "emb.npy", LoadOptions(progress=False)).tokens == ("a\rb", "c")


def test_vocab_with_windows_line_ends(tmp_path: Path, options: Options) -> None:
    path = tmp_path / "emb.npy"
    np.save(path, vectors(2))
    path.with_suffix(".vocab.txt").write_bytes(b"the\r\nkernel\r\n")
    assert load_table(path, options()).tokens == ("the", "kernel")


@pytest.mark.parametrize("name", ["emb.txt", "emb.bin"])
def test_save_refuses_a_token_the_format_cannot_hold(tmp_path: Path, name: str) -> None:
    table = EmbeddingTable(["new york", "b"], vectors(2))
    with pytest.raises(ValueError, match=r"token 'new york' at row 0 contains a space"):
        save_table(table, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_gzip_header_names_the_target_not_a_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "emb.txt.gz"
    save_table(EmbeddingTable(TOKENS, vectors()), out)
    header = out.read_bytes()[:64]
    assert b"emb.txt\x00" in header and b".tmp" not in header


def test_saved_file_has_the_usual_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save_table(EmbeddingTable(TOKENS, vectors()), tmp_path / "emb.npy")
    finally:
        os.umask(old)
    for name in ("emb.npy", "emb.vocab.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


# -- no half-written output ----------------------------------------------------------------------


def _fail_midway(*args: object, handle: object = None, **kwargs: object) -> None:
    target = handle if handle is not None else args[0]
    target.write(b"1000 300\nthe 0.1 0.2")  # type: ignore[attr-defined]
    raise OSError("disk full")


@pytest.mark.parametrize("name", ["emb.txt", "emb.txt.gz", "emb.bin"])
def test_failed_save_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(formats, "write_text", _fail_midway)
    monkeypatch.setattr(formats, "write_binary", _fail_midway)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError, match="disk full"):
        save_table(EmbeddingTable(TOKENS, vectors()), out / name)
    assert list(out.iterdir()) == []


def test_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "emb.txt"
    target.write_bytes(b"previous")
    monkeypatch.setattr(formats, "write_text", _fail_midway)
    with pytest.raises(OSError, match="disk full"):
        save_table(EmbeddingTable(TOKENS, vectors()), target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["emb.txt"]


@pytest.mark.parametrize("name", ["emb.npy", "emb.safetensors"])
def test_failed_vocab_write_leaves_neither_matrix_nor_vocab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    def fail(path: Path, tokens: Sequence[str]) -> None:
        path.write_text("the\nker")
        raise OSError("disk full")

    monkeypatch.setattr(formats, "write_vocab", fail)
    with pytest.raises(OSError, match="disk full"):
        save_table(EmbeddingTable(TOKENS, vectors()), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_absurd_header_counts_are_refused_before_allocating(tmp_path: Path) -> None:
    text = tmp_path / "huge.w2v.txt"
    text.write_text("4000000000 300\na 1 2 3\n")
    with pytest.raises(InputError, match=r"huge.w2v.txt:1: header says 4,000,000,000 rows of 300 values, more than"):
        load_table(text, LoadOptions(cache=False, progress=False))
    binary = tmp_path / "huge.bin"
    binary.write_bytes(b"4000000000 300\na " + b"\0" * 1200)
    with pytest.raises(InputError, match=r"huge.bin:1: truncated: header says 4,000,000,000 rows"):
        load_table(binary, LoadOptions(cache=False, progress=False))


def test_wrong_dimension_is_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "t.w2v.txt"
    path.write_text("1 3\na 1 2 3\n")
    with pytest.raises(InputError, match=r"t.w2v.txt:1: dimension is 3, the config expects 300"):
        load_table(path, LoadOptions(dim=300, cache=False, progress=False))


def test_npz_and_text_named_as_npy_are_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", a=np.zeros((2, 2), np.float32))
    with pytest.raises(InputError, match=r"m.npz: is a .npz archive, not a .npy matrix"):
        load_table(tmp_path / "m.npz", LoadOptions(progress=False))
    (tmp_path / "t.txt").write_text("1 2\na 1 2\n")
    with pytest.raises(InputError, match=r"t.txt: is not a .npy file \(no NumPy header\)"):
        load_table(tmp_path / "t.txt", LoadOptions(format="npy", progress=False))


# -- every format, and keras ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_every_format_round_trips_bit_identically(
    tmp_path: Path, options: Options, source_table: EmbeddingTable, fmt: str
) -> None:
    out = tmp_path / "out" / f"emb{formats.EXTENSIONS[fmt]}"
    save_table(source_table, out)
    assert detect_format(out) == fmt
    for how in ("auto", fmt):
        again = load_table(out, options(format=how))
        assert again.tokens == source_table.tokens
        assert again.matrix.dtype == np.float32
        np.testing.assert_array_equal(again.matrix, source_table.matrix)
        assert again.checksum == source_table.checksum
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


# tokens a user's vocabulary may well hold: unicode, quotes, punctuation, numbers, blanks, line breaks
ODD_TOKENS = ["numpy", "array", "don't", "-", ".", "...", "3.14", "42", "-1", "1e5", "nan", "null", "True",
              "日本", "café", "e\u0301", "🙂", "", " ", " a", "a b", "a\nb", "a\rb", "x\u2028y", "[UNK]", "\\n"]


@pytest.fixture
def keras_file(tmp_path: Path) -> tuple[Path, EmbeddingTable]:
    """A table with odd tokens saved as ``emb.keras``."""
    table = EmbeddingTable(ODD_TOKENS, vectors(len(ODD_TOKENS), dim=6, seed=5))
    path = tmp_path / "emb.keras"
    save_table(table, path)
    return path, table


def test_keras_file_is_a_model_that_maps_tokens_to_their_rows(keras_file: tuple[Path, EmbeddingTable]) -> None:
    path, table = keras_file
    assert [p.name for p in path.parent.iterdir()] == ["emb.keras"]  # the tokens travel inside
    model = keras.saving.load_model(path)
    embedding = model.get_layer("embedding")
    assert isinstance(embedding, keras.layers.Embedding)
    assert (embedding.input_dim, embedding.output_dim) == (len(table), table.dim)
    assert embedding.embeddings.dtype == "float32"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(embedding.embeddings), table.matrix)
    lookup = model.get_layer("lookup")
    assert isinstance(lookup, keras.layers.StringLookup)
    assert lookup.get_vocabulary() == list(ODD_TOKENS)
    out = model(tf.constant([ODD_TOKENS, list(reversed(ODD_TOKENS))])).numpy()
    np.testing.assert_array_equal(out[0], table.matrix)
    np.testing.assert_array_equal(out[1], table.matrix[::-1])
    np.testing.assert_array_equal(model(tf.constant([["numpy", "array"]])).numpy()[0], table.matrix[:2])
    with zipfile.ZipFile(path) as archive:  # as Keras keeps a list vocabulary: in the config, as JSON
        config = json.loads(archive.read("config.json"))
    lookups = [layer for layer in config["config"]["layers"] if layer["class_name"] == "StringLookup"]
    assert lookups[0]["config"]["vocabulary"] == ODD_TOKENS


def test_keras_round_trip_of_odd_tokens(keras_file: tuple[Path, EmbeddingTable], options: Options) -> None:
    path, table = keras_file
    again = load_table(path, options())
    assert again.tokens == tuple(ODD_TOKENS)
    assert again.checksum == table.checksum
    assert isinstance(again.matrix, np.memmap)  # read in place, like a .npy table


def test_keras_embedding_layer_is_reusable_in_a_new_model(keras_file: tuple[Path, EmbeddingTable]) -> None:
    path, table = keras_file
    embedding = keras.saving.load_model(path).get_layer("embedding")
    embedding.trainable = False
    ids = np.array([[0, 4, 7], [1, 1, 2]], dtype="int32")
    sequential = keras.Sequential([keras.Input(shape=(3,), dtype="int32"), embedding,
                                   keras.layers.GlobalAveragePooling1D()])
    np.testing.assert_allclose(sequential(ids).numpy(), table.matrix[ids].mean(axis=1), rtol=1e-6)
    inputs = keras.Input(shape=(None,), dtype="int32")
    functional = keras.Model(inputs, keras.layers.Dense(2)(embedding(inputs)))
    assert functional(ids).shape == (2, 3, 2)
    assert not embedding.trainable_weights


def test_keras_model_refuses_an_unknown_token(keras_file: tuple[Path, EmbeddingTable]) -> None:
    model = keras.saving.load_model(keras_file[0])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"found OOV values \[\"zzz\"\]"):
        model(tf.constant([["numpy", "zzz"]]))


@pytest.mark.parametrize(("token", "problem"), [("b\0", "ends with a NUL character"),
                                                ("\ud800b", "is not valid Unicode")])
def test_keras_save_refuses_a_token_keras_cannot_hold(tmp_path: Path, token: str, problem: str) -> None:
    table = EmbeddingTable(["a", token], vectors(2))
    with pytest.raises(ValueError, match=rf"token {token!r} at row 1 {problem}".replace("\\", "\\\\")):
        save_table(table, tmp_path / "emb.keras")
    assert list(tmp_path.iterdir()) == []


def test_keras_load_options(keras_file: tuple[Path, EmbeddingTable], options: Options) -> None:
    path, table = keras_file
    head = load_table(path, options(limit=3))
    assert head.tokens == tuple(ODD_TOKENS[:3])
    np.testing.assert_array_equal(head.matrix, table.matrix[:3])
    digits = load_table(path, options(token_filter=r"-?\d+"))
    assert digits.tokens == ("42", "-1")
    np.testing.assert_array_equal(digits.matrix, table.matrix[[7, 8]])
    assert len(load_table(path, options(sha256=formats.file_sha256(path)))) == len(table)
    with input_error(path, None, "dimension is 6, the config expects 300"):
        load_table(path, options(dim=300))
    with input_error(path, None, "no Embedding layer named 'words'", "embedding.tensor", "'embedding'"):
        load_table(path, options(tensor="words"))


def _save_model(model: keras.Model, path: Path) -> Path:
    keras.saving.save_model(model, path)
    return path


def test_bad_keras_files_are_input_errors(tmp_path: Path, options: Options) -> None:
    text = tmp_path / "text.keras"
    text.write_text("the 0.1 0.2\n")
    with input_error(text, None, "not a Keras archive", "model.save('x.keras')"):
        load_table(text, options())
    other_zip = tmp_path / "other.keras"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with input_error(other_zip, None, "a zip file without config.json, not a Keras archive"):
        load_table(other_zip, options())
    dense = _save_model(keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2)]), tmp_path / "dense.keras")
    with input_error(dense, None, "has no Embedding layer"):
        load_table(dense, options())
    ids_only = _save_model(keras.Sequential([keras.Input(shape=(3,), dtype="int32"), keras.layers.Embedding(5, 4)]),
                           tmp_path / "ids.keras")
    with input_error(ids_only, None, "has no StringLookup layer", "StringLookup(vocabulary=tokens)"):
        load_table(ids_only, options())


def _adapted_lookup() -> keras.layers.StringLookup:
    lookup = keras.layers.StringLookup()  # one OOV index, "[UNK]", at 0; the vocabulary goes to the assets
    lookup.adapt(tf.constant(["b", "a", "a", "c", "a", "b"]))
    return lookup


@pytest.mark.parametrize(("make_lookup", "tokens", "reserved"), [
    (lambda: keras.layers.StringLookup(vocabulary=["a", "b", "c"], mask_token=""), ["a", "b", "c"], 2),
    (_adapted_lookup, ["a", "b", "c"], 1),
])
def test_keras_file_written_elsewhere_leaves_out_the_mask_and_oov_rows(
    tmp_path: Path, options: Options, caplog: pytest.LogCaptureFixture,
    make_lookup: Callable[[], keras.layers.StringLookup], tokens: list[str], reserved: int,
) -> None:
    lookup = make_lookup()
    embedding = keras.layers.Embedding(lookup.vocabulary_size(), 4)
    inputs = keras.Input(shape=(None,), dtype="string")
    path = _save_model(keras.Model(inputs, embedding(lookup(inputs))), tmp_path / "theirs.keras")
    weights = keras.ops.convert_to_numpy(embedding.embeddings)
    with caplog.at_level(logging.WARNING, logger="pipeline.formats"):
        table = load_table(path, options())
    assert table.tokens == tuple(tokens)
    np.testing.assert_array_equal(table.matrix, weights[reserved:])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"left out the first {reserved} rows" in w for w in warnings), warnings


def test_failed_keras_save_leaves_no_file_and_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(path: Path, tokens: Sequence[str], matrix: np.ndarray) -> None:
        path.write_bytes(b"PK\x03\x04half")
        raise OSError("disk full")

    target = tmp_path / "emb.keras"
    target.write_bytes(b"previous")
    monkeypatch.setattr(formats, "write_keras", fail)
    with pytest.raises(OSError, match="disk full"):
        save_table(EmbeddingTable(TOKENS, vectors()), target)
    assert [p.name for p in tmp_path.iterdir()] == ["emb.keras"]
    assert target.read_bytes() == b"previous"


def test_keras_file_rezipped_with_compression_is_still_read(
    keras_file: tuple[Path, EmbeddingTable], options: Options
) -> None:
    path, table = keras_file
    packed = path.with_name("packed.keras")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
    again = load_table(packed, options())
    assert not isinstance(again.matrix, np.memmap)  # read through the zip, not mapped
    assert again.tokens == table.tokens and again.checksum == table.checksum


def test_text_export_writes_what_python_formats_and_reads_back_bit_identical(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_format, "WRITE_ROWS", 3)  # several blocks, formatted on both threads
    rng = np.random.default_rng(5)
    matrix = (rng.normal(0, 1, (11, 6)) * 10.0 ** rng.integers(-30, 30, (11, 6))).astype(np.float32)
    awkward = np.finfo(np.float32)
    matrix[0] = [awkward.max, awkward.tiny, awkward.smallest_subnormal, -0.0, 0.1, 1 / 3]
    tokens = [f"t{i}" for i in range(11)]
    path = tmp_path / "out.w2v.txt"
    with path.open("wb") as handle:
        text_format.write_text(path, tokens, matrix, header=True, handle=handle)
    expected = "11 6\n" + "".join(f"{t} " + " ".join(f"{float(v):.9g}" for v in row) + "\n"
                                  for t, row in zip(tokens, matrix, strict=True))
    assert path.read_text(encoding="utf-8") == expected
    back = load_table(path, LoadOptions(cache=False))
    assert back.tokens == tuple(tokens)
    assert np.array_equal(np.asarray(back.matrix).view(np.uint32), matrix.view(np.uint32))
