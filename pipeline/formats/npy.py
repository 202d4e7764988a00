"""NumPy tables: a ``.npy`` matrix (loaded memory-mapped, never unpickled) and a tokens file beside it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.errors import InputError
from pipeline.formats.raw import RawRows, check_finite


def vocab_path_for(path: Path, explicit: str | None) -> Path:
    """Where the tokens of a matrix file live: ``explicit``, else ``<name>.vocab.txt``, else ``vocab.txt``."""
    if explicit:
        return Path(explicit).expanduser()
    sibling = path.with_suffix(".vocab.txt")
    if sibling.exists():
        return sibling
    shared = path.parent / "vocab.txt"
    return shared if shared.exists() else sibling


def read_vocab(path: Path, rows: int | None) -> list[str]:
    """One token per line, UTF-8; the count must match ``rows`` when given."""
    if not path.exists():
        raise InputError(path, "tokens file not found",
                         hint="set embedding.vocab_path to the file of tokens, one per line")
    data = path.read_bytes()
    try:
        # split on "\n" only: a token may hold a "\r" (text mode would split there)
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(path, f"not valid UTF-8 ({err.reason})", line=line,
                         hint="the tokens file must be UTF-8, one token per line") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    if tokens and all(t.endswith("\r") for t in tokens):  # written with Windows line ends
        tokens = [t[:-1] for t in tokens]
    if rows is not None and len(tokens) != rows:
        raise InputError(path, f"{len(tokens)} tokens for {rows} rows",
                         hint="the tokens file must list one token per row")
    return tokens


def parse_npy(path: Path, *, vocab_path: str | None, limit: int | None) -> RawRows:
    """Load a ``.npy`` matrix memory-mapped (``allow_pickle=False``) and its tokens."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"PK"):
        raise InputError(path, "is a .npz archive, not a .npy matrix", hint="save the matrix alone with numpy.save")
    if magic != b"\x93NUMPY":
        raise InputError(path, "is not a .npy file (no NumPy header)", hint="check embedding.format and embedding.path")
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise InputError(path, f"not a plain .npy matrix: {err}",
                         hint="save with numpy.save(allow_pickle=False)") from None
    if matrix.ndim != 2:
        raise InputError(path, f"matrix has shape {matrix.shape}", hint="expected a 2-D (rows, dim) matrix")
    tokens = read_vocab(vocab_path_for(path, vocab_path), matrix.shape[0])
    if limit is not None:
        matrix, tokens = matrix[:limit], tokens[:limit]
    matrix = as_float32(path, matrix)
    check_finite(path, tokens, matrix)
    return RawRows(tokens, matrix, first_line=None)


def as_float32(path: Path, matrix: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    if matrix.dtype == np.float32:
        return matrix  # type: ignore[return-value]
    if not np.issubdtype(matrix.dtype, np.floating):
        raise InputError(path, f"matrix dtype is {matrix.dtype}", hint="expected floating-point values")
    return np.asarray(matrix, dtype=np.float32)


def write_vocab(path: Path, tokens: Sequence[str]) -> None:
    """Write one token per line."""
    for token in tokens:
        if "\n" in token:
            raise ValueError(f"token {token!r} contains a newline and cannot be written to {path}")
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
