"""The Embedding Projector export: selected rows as a TF checkpoint and a TSV, their labels, the projector config.

``tensorboard --logdir <directory>`` shows the rows in its Projector tab; ``vectors.tsv`` with
``metadata.tsv`` load into the standalone https://projector.tensorflow.org ("Load" button).

The pieces line up as TensorBoard's projector plugin reads them: ``tf.train.Checkpoint(embedding=v)``
stores the variable under the key ``embedding/.ATTRIBUTES/VARIABLE_VALUE``, which is the
``tensor_name`` the config names; the config sets no ``model_checkpoint_path``, so the plugin
finds the checkpoint through the ``checkpoint`` state file in the log directory, whose path is
relative: the folder can be moved or downloaded from MLflow and still opens.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from pipeline.atomic import staging_dir
from pipeline.table import EmbeddingTable

log = logging.getLogger(__name__)

TENSOR_NAME = "embedding/.ATTRIBUTES/VARIABLE_VALUE"  # the key tf.train.Checkpoint gives attribute `embedding`
CHECKPOINT_PREFIX = "embedding.ckpt"
METADATA_FILE = "metadata.tsv"
VECTORS_FILE = "vectors.tsv"
CONFIG_FILE = "projector_config.pbtxt"  # the name the plugin looks for in the log directory
METADATA_HEADER = "token\tkind"

# The text `text_format.MessageToString` gives for a ProjectorConfig with one embedding (checked by the
# tests against tensorboard's own proto when tensorboard is installed). Written directly because
# TensorFlow 2.21 no longer installs tensorboard, and the export should not need it.
CONFIG_TEXT = f'embeddings {{\n  tensor_name: "{TENSOR_NAME}"\n  metadata_path: "{METADATA_FILE}"\n}}\n'

# Characters that end a line or a field for some reader (the projector splits on \n and \t; Python's
# splitlines on the others), and the backslash so that the escaping can be undone.
_ESCAPES = {
    ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r",
    **{ord(ch): f"\\x{ord(ch):02x}" for ch in "\x0b\x0c\x1c\x1d\x1e\x85"},
    **{ord(ch): f"\\u{ord(ch):04x}" for ch in "\u2028\u2029"},
}


def write_projector(table: EmbeddingTable, directory: Path, *, new: Collection[str], shifted: Collection[str],
                    max_rows: int = 10000) -> Path:
    """Write the Embedding Projector files for a sample of ``table``'s rows into ``directory``.

    The sample holds every new and every shifted row, then the table's first rows (GloVe and
    word2vec tables are sorted by frequency, so these are the common words) up to ``max_rows``,
    listed in table order and labelled ``new``, ``shifted`` or ``frozen``. ``max_rows`` is a hard
    cap, since it keeps the browser responsive and the artifact small: when there are more new and
    shifted rows than that, new rows come first, then shifted ones, each in table order, no frozen
    row is added and a warning says how many were left out.

    Files: ``checkpoint`` and ``embedding.ckpt-1.*`` (one float32 variable, the rows bit for bit),
    ``metadata.tsv`` (header ``token<TAB>kind``; tabs, newlines and backslashes in tokens escaped
    as ``\\t``, ``\\n``, ``\\\\``), ``vectors.tsv`` (the same rows as text, no header, each value
    printed so that it reads back to the same float32), ``projector_config.pbtxt``. They are
    written into a staging folder and moved into ``directory`` once all are complete.

    Args:
        table: the adapted table.
        directory: the log directory to write into (created if needed); files of an earlier export
            are replaced.
        new: the appended tokens.
        shifted: the fine-tuned table tokens (a token also in ``new`` counts as new).
        max_rows: the most rows to export.

    Returns:
        ``directory``, the path to give ``tensorboard --logdir``.

    Raises:
        ValueError: ``max_rows`` is not positive.
        KeyError: a new or shifted token is not in the table.
    """
    rows, kinds = projector_rows(table, new=new, shifted=shifted, max_rows=max_rows)
    vectors = np.ascontiguousarray(table.matrix[rows])
    tokens = table.tokens
    labels = [metadata_label(tokens[int(row)]) for row in rows]
    with staging_dir(directory) as stage:
        _write_checkpoint(vectors, stage / CHECKPOINT_PREFIX)
        _write_metadata(labels, kinds, stage / METADATA_FILE)
        np.savetxt(stage / VECTORS_FILE, vectors, fmt="%.9g", delimiter="\t", newline="\n", encoding="utf-8")
        (stage / CONFIG_FILE).write_text(CONFIG_TEXT, encoding="utf-8")
    return directory


def projector_rows(table: EmbeddingTable, *, new: Collection[str], shifted: Collection[str],
                   max_rows: int) -> tuple[npt.NDArray[np.int64], list[str]]:
    """The rows :func:`write_projector` exports, in table order, and the kind of each.

    Raises:
        ValueError: ``max_rows`` is not positive.
        KeyError: a new or shifted token is not in the table.
    """
    if max_rows < 1:
        raise ValueError(f"projector max_rows must be positive, got {max_rows}")
    new_rows = _rows_of(table, new)
    shifted_rows = np.setdiff1d(_rows_of(table, shifted), new_rows)
    chosen = np.concatenate([new_rows, shifted_rows])[:max_rows]
    left_out = len(new_rows) + len(shifted_rows) - len(chosen)
    if left_out:
        log.warning("projector: %d new and %d shifted rows exceed max_rows=%d; %d left out (no frozen rows)",
                    len(new_rows), len(shifted_rows), max_rows, left_out)
    room = max_rows - len(chosen)
    head = np.arange(min(len(table), room + len(chosen)), dtype=np.int64)
    frozen = head[~np.isin(head, chosen)][:room]
    rows = np.sort(np.concatenate([chosen, frozen]))
    new_set, shifted_set = set(new_rows.tolist()), set(shifted_rows.tolist())
    kinds = ["new" if r in new_set else "shifted" if r in shifted_set else "frozen" for r in rows.tolist()]
    return rows, kinds


def metadata_label(token: str) -> str:
    """``token`` as one TSV field: backslash, tab, newline and other line breaks escaped, reversibly."""
    return token.translate(_ESCAPES)


def _rows_of(table: EmbeddingTable, tokens: Collection[str]) -> npt.NDArray[np.int64]:
    """The sorted, unique row indices of ``tokens``; a token not in the table is an error."""
    listed = list(tokens)
    rows = table.indices(listed)
    if (rows < 0).any():
        raise KeyError(f"token {listed[int(np.flatnonzero(rows < 0)[0])]!r} not in table")
    return np.unique(rows)


def _write_checkpoint(vectors: npt.NDArray[np.float32], prefix: Path) -> None:
    """Save ``vectors`` as the one variable ``embedding`` of a ``tf.train.Checkpoint`` (``<prefix>-1``)."""
    with tf.device("/CPU:0"):  # an export: no reason to copy the rows into accelerator memory
        embedding = tf.Variable(vectors, trainable=False, name="embedding")
    tf.train.Checkpoint(embedding=embedding).save(str(prefix))


def _write_metadata(labels: list[str], kinds: list[str], path: Path) -> None:
    """``metadata.tsv``: the header, then one ``label<TAB>kind`` line per exported row."""
    lines = [METADATA_HEADER, *(f"{label}\t{kind}" for label, kind in zip(labels, kinds, strict=True))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
