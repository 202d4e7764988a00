"""Vectors for new tokens, induced from the pretrained vectors of their contexts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pipeline.table import EmbeddingTable
from pipeline.vocab import DomainVocab

if TYPE_CHECKING:
    from pipeline.cooccurrence import ContextCounts

log = logging.getLogger(__name__)

METHODS = ("mean_context",)


@dataclass(frozen=True)
class InduceOptions:
    """How new tokens get their first vector.

    Attributes:
        method: ``mean_context``, the mean pretrained vector of the tokens around each occurrence.
        window: context tokens on each side.
    """

    method: str = "mean_context"
    window: int = 5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"induce.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.window < 1:
            raise ValueError(f"induce.window must be at least 1, got {self.window}")


@dataclass(frozen=True)
class InducedVectors:
    """One vector per new token that could be placed.

    Attributes:
        tokens: the placed tokens, in the vocabulary's order.
        vectors: ``(len(tokens), dim)`` float32.
        methods: the method that placed each token.
        contexts: in-table context occurrences behind each vector.
        unplaced: new tokens with no in-table context, left out.
    """

    tokens: tuple[str, ...]
    vectors: npt.NDArray[np.float32]
    methods: tuple[str, ...]
    contexts: tuple[int, ...]
    unplaced: tuple[str, ...]


def induce_vectors(contexts: ContextCounts, table: EmbeddingTable, vocab: DomainVocab,
                   options: InduceOptions) -> InducedVectors:
    """Give each new token of ``vocab`` the mean pretrained vector of its in-table contexts.

    Args:
        contexts: context counts from the corpus pass; their targets include the new tokens.
        table: the pretrained table.
        vocab: the chosen domain tokens.
        options: the method.
    """
    targets = vocab.new_tokens
    if not targets:
        return InducedVectors((), np.zeros((0, table.dim), np.float32), (), (), ())
    means, totals = contexts.mean_vectors(table, targets)
    placed = totals > 0
    unplaced = tuple(t for t, ok in zip(targets, placed, strict=True) if not ok)
    if unplaced:
        log.warning("%d new tokens have no context in the table and get no vector (e.g. %s)",
                    len(unplaced), ", ".join(unplaced[:5]))
    tokens = tuple(t for t, ok in zip(targets, placed, strict=True) if ok)
    return InducedVectors(
        tokens=tokens,
        vectors=means[placed],
        methods=(options.method,) * len(tokens),
        contexts=tuple(int(n) for n in totals[placed]),
        unplaced=unplaced,
    )
