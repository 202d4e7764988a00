"""Keras tables: a ``.keras`` model whose StringLookup maps each token to its row of an Embedding layer.

The file :func:`write_keras` saves is a plain Keras 3 archive::

    model = keras.saving.load_model("embedding.keras")
    model(tf.constant([["numpy", "array"]]))        # (1, 2, dim): the two rows, bit-identical
    layer = model.get_layer("embedding")             # keras.layers.Embedding(rows, dim), float32
    vocab = model.get_layer("lookup").get_vocabulary()  # the tokens in row order

The model is ``Input(shape=(None,), dtype="string", name="tokens")`` → ``StringLookup(name="lookup",
vocabulary=tokens, num_oov_indices=0, mask_token=None)`` → ``Embedding(name="embedding")``. With no
mask and no OOV index, token ``i`` maps to index ``i``, so the Embedding holds exactly the table's
rows. An unknown token is an error, not a silent row: the lookup raises
``tf.errors.InvalidArgumentError`` ("all inputs should be in vocabulary, found OOV values [...]").
To send unknown tokens to a row of their own, build a ``StringLookup(num_oov_indices=1)`` and an
Embedding with one more row (index 0) in front.

Keras keeps a vocabulary given as a list inside the archive's ``config.json`` (JSON: every string
survives, including ``""``, spaces and line breaks); only adapted or file vocabularies go to
``assets/.../vocabulary.txt``, which Keras splits with ``str.splitlines`` and reads in the locale's
encoding. Tokens Keras itself cannot hold are refused when saving (see
:func:`check_keras_tokens`).

Reading needs neither TensorFlow nor Keras: the archive is a zip whose ``model.weights.h5`` Keras
stores uncompressed, so the Embedding matrix is memory-mapped straight out of the ``.keras`` file,
like a ``.npy`` table. Files written elsewhere are read too: the Embedding layer named by
``embedding.tensor`` (else the only one, else the one named ``embedding``), and the StringLookup
(the only one, else ``lookup``); the rows a StringLookup reserves for its mask and OOV tokens are
left out of the table.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import InputError
from pipeline.formats.npy import as_float32
from pipeline.formats.raw import RawRows, check_finite

log = logging.getLogger(__name__)

EMBEDDING_LAYER = "embedding"
LOOKUP_LAYER = "lookup"
INPUT_NAME = "tokens"
MODEL_NAME = "embedding_table"
_WEIGHTS = "model.weights.h5"
_CONFIG = "config.json"
_HINT = "expected a Keras 3 model saved with model.save('x.keras') or save_table(table, 'x.keras')"


# -- writing -------------------------------------------------------------------------------------


def check_keras_tokens(tokens: Sequence[str], path: Path) -> None:
    """Refuse tokens a Keras StringLookup cannot give back unchanged.

    TensorFlow strings are UTF-8, so a token with a lone surrogate cannot be stored; and Keras
    turns a vocabulary into a fixed-width NumPy string array when loading, which drops trailing
    NUL characters (``"a\\0"`` would come back as ``"a"``). The check runs in C over all tokens at
    once; the loop that names the token runs only when one is found.

    Raises:
        ValueError: names the first such token and its row.
    """
    joined = "\n".join(tokens) + "\n"
    try:
        joined.encode("utf-8")
        suspicious = "\0\n" in joined
    except UnicodeEncodeError:
        suspicious = True
    if not suspicious:
        return
    for row, token in enumerate(tokens):
        if token.endswith("\0"):
            raise ValueError(f"{path}: token {token!r} at row {row} ends with a NUL character, which a Keras "
                             "StringLookup drops when loading (save as npy or safetensors)")
        try:
            token.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{path}: token {token!r} at row {row} is not valid Unicode ({err.reason}); "
                             "a Keras StringLookup holds UTF-8 strings") from None


def write_keras(path: Path, tokens: Sequence[str], matrix: npt.NDArray[np.float32]) -> None:
    """Save ``tokens`` and ``matrix`` as a Keras model (see the module docstring for its layout).

    Args:
        path: the file to write; Keras insists on a name ending with ``.keras``.
        tokens: one token per row, unique, as :func:`check_keras_tokens` accepts.
        matrix: the ``(len(tokens), dim)`` float32 matrix.

    The Embedding's variable is created from ``matrix`` directly (one copy, owned by TensorFlow):
    ``Embedding(weights=...)`` would first fill the variable with random values and then assign,
    which takes twice the memory and about twice the time. Keras then copies the variable to
    NumPy to write it; a save peaks at about three times the matrix on top of the caller's table.
    """
    import keras  # TensorFlow loads in seconds: only when a Keras file is written

    rows, dim = matrix.shape

    def table_rows(shape: tuple[int, ...], dtype: object = None) -> npt.NDArray[np.float32]:
        return np.ascontiguousarray(matrix)

    lookup = keras.layers.StringLookup(
        vocabulary=np.array(tokens, dtype=object),  # an object array: no fixed-width copy of every token
        num_oov_indices=0, mask_token=None, name=LOOKUP_LAYER)
    embedding = keras.layers.Embedding(rows, dim, embeddings_initializer=table_rows, dtype="float32",
                                       name=EMBEDDING_LAYER)
    embedding.build()
    # the saved config must name a built-in initializer; loading overwrites the values anyway
    embedding.embeddings_initializer = keras.initializers.Zeros()
    inputs = keras.Input(shape=(None,), dtype="string", name=INPUT_NAME)
    model = keras.Model(inputs, embedding(lookup(inputs)), name=MODEL_NAME)
    keras.saving.save_model(model, str(path))


# -- reading -------------------------------------------------------------------------------------


def parse_keras(path: Path, *, layer: str | None, limit: int | None) -> RawRows:
    """Read the tokens of a ``.keras`` file's StringLookup and the rows of its Embedding layer.

    Args:
        path: the ``.keras`` file.
        layer: the Embedding layer's name; None picks the only one, else the one named ``embedding``.
        limit: keep only the first N tokens.

    Raises:
        InputError: not a Keras archive, no (or no single) Embedding or StringLookup layer, or a
            vocabulary that does not fit the Embedding's rows.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(path, f"not a Keras archive ({err})", hint=_HINT) from None
    with archive:
        config = _read_config(path, archive)
        layers = list(_layers(config))
        embedding = _pick_embedding(path, layers, layer)
        lookup = _pick_lookup(path, layers)
        tokens, first_row = _vocabulary(path, archive, lookup)
        shape = (int(embedding["input_dim"]), int(embedding["output_dim"]))
        if first_row + len(tokens) > shape[0]:
            raise InputError(path, f"StringLookup {lookup['name']!r} has {len(tokens)} tokens after {first_row} "
                             f"reserved indices, Embedding {embedding['name']!r} only {shape[0]} rows",
                             hint="the two layers do not belong together")
        if first_row:
            log.warning("%s: left out the first %d rows of %r, the StringLookup's mask and OOV indices",
                        path, first_row, embedding["name"])
        rows = len(tokens) if limit is None else min(len(tokens), limit)
        matrix = _read_rows(path, archive, embedding["name"], shape, first_row, rows)
    tokens = tokens[:rows]
    matrix = as_float32(path, matrix)
    check_finite(path, tokens, matrix)
    return RawRows(tokens, matrix, first_line=None)


def _read_config(path: Path, archive: zipfile.ZipFile) -> dict[str, Any]:
    try:
        raw = archive.read(_CONFIG)
    except KeyError:
        raise InputError(path, f"a zip file without {_CONFIG}, not a Keras archive", hint=_HINT) from None
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(path, f"{_CONFIG} is not valid JSON ({err})", hint=_HINT) from None
    if not isinstance(config, dict):
        raise InputError(path, f"{_CONFIG} holds no model", hint=_HINT)
    return config


def _layers(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every layer entry of a serialized model, nested models included (not the vocabularies)."""
    inner = node.get("config")
    children = inner.get("layers") if isinstance(inner, dict) else None
    for child in children if isinstance(children, list) else ():
        if isinstance(child, dict):
            yield child
            yield from _layers(child)


def _layer_config(entry: dict[str, Any]) -> dict[str, Any]:
    config = entry.get("config")
    return config if isinstance(config, dict) else {}


def _pick_embedding(path: Path, layers: list[dict[str, Any]], name: str | None) -> dict[str, Any]:
    found = [_layer_config(e) for e in layers if e.get("class_name") == "Embedding"]
    names = [c.get("name") for c in found]
    if not found:
        raise InputError(path, "has no Embedding layer", hint=_HINT)
    if name is not None:
        chosen = [c for c in found if c.get("name") == name]
        if not chosen:
            raise InputError(path, f"no Embedding layer named {name!r}",
                             hint=f"set embedding.tensor to one of {names[:8]}")
    elif len(found) == 1:
        chosen = found
    else:
        chosen = [c for c in found if c.get("name") == EMBEDDING_LAYER]
        if not chosen:
            raise InputError(path, f"holds {len(found)} Embedding layers",
                             hint=f"set embedding.tensor to one of {names[:8]}")
    config = chosen[0]
    if not all(isinstance(config.get(key), int) and config[key] > 0 for key in ("input_dim", "output_dim")):
        raise InputError(path, f"Embedding layer {config.get('name')!r} has no valid input_dim/output_dim", hint=_HINT)
    if config.get("quantization_config") or config.get("lora_rank"):
        raise InputError(path, f"Embedding layer {config.get('name')!r} is quantized or has LoRA weights",
                         hint="save the model with a plain float Embedding layer")
    return config


def _pick_lookup(path: Path, layers: list[dict[str, Any]]) -> dict[str, Any]:
    found = [c for c in map(_layer_config, (e for e in layers if e.get("class_name") == "StringLookup"))
             if not c.get("invert") and c.get("output_mode", "int") == "int"]
    if not found:
        raise InputError(path, "has no StringLookup layer (output_mode='int') to give the Embedding's tokens",
                         hint="put keras.layers.StringLookup(vocabulary=tokens) in front of the Embedding, "
                         "or use save_table(table, 'x.keras')")
    if len(found) == 1:
        return found[0]
    chosen = [c for c in found if c.get("name") == LOOKUP_LAYER]
    if not chosen:
        raise InputError(path, f"holds {len(found)} StringLookup layers: "
                         f"{[c.get('name') for c in found][:8]}",
                         hint=f"name the one that indexes the Embedding {LOOKUP_LAYER!r}")
    return chosen[0]


def _vocabulary(path: Path, archive: zipfile.ZipFile, lookup: dict[str, Any]) -> tuple[list[str], int]:
    """The lookup's tokens and the index of the first one, as Keras's StringLookup assigns them."""
    vocabulary = lookup.get("vocabulary")
    if vocabulary is None:
        vocabulary = _asset_vocabulary(path, archive, lookup)
    if not isinstance(vocabulary, list) or not all(isinstance(t, str) for t in vocabulary):
        raise InputError(path, f"StringLookup {lookup.get('name')!r} has no list of string tokens", hint=_HINT)
    num_oov = lookup.get("num_oov_indices", 1)
    mask = lookup.get("mask_token")
    if not isinstance(num_oov, int) or num_oov < 0:
        raise InputError(path, f"StringLookup {lookup.get('name')!r} has num_oov_indices={num_oov!r}", hint=_HINT)
    # as IndexLookup.set_vocabulary: the mask, then the OOV indices, then the tokens; a vocabulary
    # may list the special tokens itself (get_vocabulary() and adapted vocabularies do)
    special = ([mask] if mask is not None else []) + [lookup.get("oov_token", "[UNK]")] * num_oov
    if vocabulary[: len(special)] == special:
        vocabulary = vocabulary[len(special) :]
    return vocabulary, len(special)


def _asset_vocabulary(path: Path, archive: zipfile.ZipFile, lookup: dict[str, Any]) -> list[str]:
    """A vocabulary Keras saved as ``assets/<layer path>/vocabulary.txt`` (adapted or from a file)."""
    files = [n for n in archive.namelist() if n.startswith("assets/") and n.endswith("/vocabulary.txt")]
    if len(files) != 1:
        raise InputError(path, f"StringLookup {lookup.get('name')!r} keeps its vocabulary in the assets, which "
                         f"hold {len(files)} vocabulary files", hint=_HINT)
    try:
        text = archive.read(files[0]).decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(path, f"{files[0]} is not valid UTF-8 ({err.reason})", hint=_HINT) from None
    lines = text.splitlines()  # as StringLookup.load_assets reads it
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def _read_rows(path: Path, archive: zipfile.ZipFile, layer: str, shape: tuple[int, int], first: int,
               rows: int) -> npt.NDArray[np.float32]:
    """Rows ``first .. first + rows`` of the Embedding's matrix: memory-mapped when Keras stored it plainly."""
    import h5py

    try:
        info = archive.getinfo(_WEIGHTS)
    except KeyError:
        raise InputError(path, f"has no {_WEIGHTS}", hint="re-save the model with the default weights format") from None
    with open(path, "rb") as raw:
        stored = info.compress_type == zipfile.ZIP_STORED
        start = _member_offset(path, raw, info) if stored else 0
        handle: io.RawIOBase | IO[bytes] = _Window(raw, start, info.file_size) if stored else archive.open(info)
        with handle:
            try:
                weights = h5py.File(handle, "r")
            except OSError as err:
                raise InputError(path, f"{_WEIGHTS} is not an HDF5 file ({err})", hint=_HINT) from None
            with weights:
                dataset = _embedding_dataset(path, weights, layer, shape)
                offset = dataset.id.get_offset()
                plain = (stored and offset is not None and dataset.compression is None and dataset.chunks is None
                         and dataset.dtype == np.dtype("<f4") and "dtype" not in dataset.attrs)
                if plain and rows:
                    mapped = np.memmap(path, dtype="<f4", mode="r", shape=(rows, shape[1]),
                                       offset=start + offset + first * shape[1] * 4)
                    # a cheap guard on the offset arithmetic: the first row must read the same both ways
                    if np.array_equal(mapped[:1], dataset[first : first + 1], equal_nan=True):
                        return mapped
                return np.asarray(dataset[first : first + rows])


def _embedding_dataset(path: Path, weights: Any, layer: str, shape: tuple[int, int]) -> Any:
    """The ``vars/0`` dataset of the Embedding layer ``layer``: Keras writes ``<layer path>/vars/0``
    with the layer's name as an attribute of ``vars``."""
    import h5py

    found: list[Any] = []

    def visit(name: str, item: object) -> None:
        if not (isinstance(item, h5py.Group) and name.rsplit("/", 1)[-1] == "vars" and "0" in item):
            return
        owner = item.attrs.get("name")
        owner = owner.decode() if isinstance(owner, bytes) else owner
        dataset = item["0"]
        if owner in (layer, None) and isinstance(dataset, h5py.Dataset) and dataset.shape == shape:
            found.append(dataset)

    weights.visititems(visit)
    if len(found) != 1:
        raise InputError(path, f"{_WEIGHTS} holds {len(found)} matrices of shape {shape} for Embedding layer "
                         f"{layer!r}", hint=_HINT)
    return found[0]


def _member_offset(path: Path, raw: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Where a zip member's data starts: after its local header, whose extra field may differ from the
    central directory's."""
    raw.seek(info.header_offset)
    header = raw.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise InputError(path, f"zip member {info.filename} has no local header", hint=_HINT)
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes of ``raw`` from ``start``: an uncompressed zip
    member read in place (``ZipFile.open`` re-reads from the start on every backward seek)."""

    def __init__(self, raw: IO[bytes], start: int, size: int) -> None:
        super().__init__()
        self._raw, self._start, self._size, self._pos = raw, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = max(0, min(len(view), self._size - self._pos))
        if not wanted:
            return 0
        self._raw.seek(self._start + self._pos)
        got = self._raw.readinto(view[:wanted])  # type: ignore[attr-defined]
        self._pos += got
        return int(got)
