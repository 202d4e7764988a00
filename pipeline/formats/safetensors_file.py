"""safetensors tables: one named tensor of a ``.safetensors`` file and a vocab file, as Hugging Face ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors import safe_open

from pipeline.errors import InputError
from pipeline.formats.npy import as_float32, read_vocab, vocab_path_for
from pipeline.formats.raw import RawRows, check_finite


def parse_safetensors(
    path: Path, *, tensor: str | None, vocab_path: str | None, limit: int | None
) -> RawRows:
    """Load tensor ``tensor`` (or the file's only tensor) and its tokens; ``limit`` reads only that slice."""
    try:
        handle = safe_open(str(path), framework="np")
    except Exception as err:  # safetensors raises its own SafetensorError for malformed headers
        raise InputError(path, f"not a safetensors file: {err}") from None
    with handle as f:
        names = sorted(f.keys())
        if tensor is None:
            if len(names) != 1:
                raise InputError(path, f"holds {len(names)} tensors",
                                 hint=f"set embedding.tensor to one of {names[:8]}")
            tensor = names[0]
        if tensor not in names:
            raise InputError(path, f"no tensor {tensor!r}",
                             hint=f"set embedding.tensor to one of {names[:8]}")
        piece = f.get_slice(tensor)
        shape = piece.get_shape()
        if len(shape) != 2:
            raise InputError(path, f"tensor {tensor!r} has shape {shape}",
                             hint="expected a 2-D (rows, dim) matrix")
        rows = shape[0] if limit is None else min(shape[0], limit)
        matrix = np.ascontiguousarray(piece[:rows])
    tokens = read_vocab(vocab_path_for(path, vocab_path), shape[0])[:rows]
    matrix = as_float32(path, matrix)
    check_finite(path, tokens, matrix)
    return RawRows(tokens, matrix, first_line=None)


def write_safetensors(path: Path, matrix: np.ndarray, tensor: str) -> None:
    """Write ``matrix`` as tensor ``tensor``."""
    from safetensors.numpy import save_file

    save_file({tensor: np.ascontiguousarray(matrix, dtype=np.float32)}, str(path))
