"""Shifted tokens: table tokens the domain uses differently, by context distance and frequency lift."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pipeline.errors import InputError
from pipeline.table import EmbeddingTable

if TYPE_CHECKING:
    from pipeline.cooccurrence import ContextCounts
    from pipeline.counts import TokenCounts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShiftedToken:
    """A table token chosen to be fine-tuned, and why.

    Attributes:
        token: the token.
        count: its corpus count.
        distance: 1 - cosine between its pretrained vector and the mean vector of its domain contexts,
            both centred on the candidates' means (so the offset every context mean shares cancels).
        lift: log of its domain probability over its general probability.
        score: the sum of ``distance`` and ``lift`` as z-scores among the candidates.
    """

    token: str
    count: int
    distance: float
    lift: float
    score: float


def read_frequencies(path_text: str) -> dict[str, int]:
    """A general-language frequency list: ``token count`` per line.

    Raises:
        InputError: a missing file, or a line that is not ``token count``.
    """
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise InputError(path, "frequency list not found", hint="check vocab.general_frequencies")
    frequencies: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit():
                raise InputError(path, f"expected 'token count', got {line.strip()[:60]!r}", line=number)
            frequencies[parts[0]] = frequencies.get(parts[0], 0) + int(parts[1])
    if not frequencies:
        raise InputError(path, "frequency list is empty")
    return frequencies


def general_probabilities(table: EmbeddingTable, frequencies: str | None) -> npt.NDArray[np.float64]:
    """Each table row's general probability.

    From a frequency list (tokens it lacks get half the smallest count), or, without one, estimated
    from row order by Zipf's law (p ~ 1 / (rank + 1)): GloVe, word2vec and fastText files are
    sorted by frequency.

    Raises:
        InputError: a bad list, or one with no token of the table.
    """
    if frequencies is None:
        weights = 1.0 / np.arange(1, len(table) + 1, dtype=np.float64)
        return weights / weights.sum()
    listed = read_frequencies(frequencies)
    counts = np.zeros(len(table), dtype=np.float64)
    for token, n in listed.items():
        row = table.get(token)
        if row is not None:
            counts[row] = n
    if not counts.any():
        raise InputError(frequencies, "no token of the table is in the frequency list", hint="is it the right list?")
    counts[counts == 0] = counts[counts > 0].min() / 2
    return counts / counts.sum()


def shift_candidates(counts: TokenCounts, table: EmbeddingTable, min_count: int,
                     general: npt.NDArray[np.float64] | None = None, skip_common: int = 0) -> tuple[str, ...]:
    """Table tokens with at least ``min_count`` corpus occurrences, most frequent first.

    With ``general`` probabilities, the ``skip_common`` generally most common tokens are left out.
    """
    common: set[int] = set()
    if general is not None and skip_common:
        common = set(np.argsort(-general, kind="stable")[:skip_common].tolist())
    chosen = sorted((-n, t) for t, n in counts.counts.items()
                    if n >= min_count and t in table and table.index_of(t) not in common)
    return tuple(t for _, t in chosen)


def _z(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def score_shift(
    candidates: Sequence[str],
    contexts: ContextCounts,
    table: EmbeddingTable,
    counts: TokenCounts,
    general: npt.NDArray[np.float64],
) -> list[ShiftedToken]:
    """Score every candidate (highest score first); candidates with no in-table context are left out."""
    if len(candidates) < 2:
        return []
    means, totals = contexts.mean_vectors(table, candidates)
    keep = totals > 0
    tokens = [t for t, ok in zip(candidates, keep, strict=True) if ok]
    if len(tokens) < 2:
        return []
    rows = table.indices(tokens)
    pretrained = np.asarray(table.matrix[rows], dtype=np.float64)
    induced = means[keep].astype(np.float64)
    pretrained -= pretrained.mean(axis=0)
    induced -= induced.mean(axis=0)
    norms = np.linalg.norm(pretrained, axis=1) * np.linalg.norm(induced, axis=1)
    cosine = np.einsum("ij,ij->i", pretrained, induced) / np.maximum(norms, 1e-12)
    distance = 1.0 - cosine
    occurrences = np.array([counts.counts[t] for t in tokens], dtype=np.float64)
    lift = np.log(occurrences / counts.total) - np.log(general[rows])
    score = _z(distance) + _z(lift)
    order = np.argsort(-score, kind="stable")
    return [ShiftedToken(tokens[i], int(occurrences[i]), float(distance[i]), float(lift[i]), float(score[i]))
            for i in order]


def select_shifted(scored: list[ShiftedToken], top: int, threshold: float | None) -> tuple[ShiftedToken, ...]:
    """The ``top`` highest-scoring tokens, and of those only the ones scoring at least ``threshold``."""
    chosen = scored[:top]
    if threshold is not None:
        chosen = [s for s in chosen if s.score >= threshold]
    return tuple(chosen)
