"""Choosing the domain tokens: new tokens (frequent in the corpus, missing from the table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.table import EmbeddingTable

if TYPE_CHECKING:
    from pipeline.counts import TokenCounts


@dataclass(frozen=True)
class VocabOptions:
    """Which corpus tokens become new rows.

    Attributes:
        min_count: fewest occurrences for a new token.
        max_new: most new tokens, the most frequent first (0: no cap).
    """

    min_count: int = 5
    max_new: int = 10000

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise ValueError(f"vocab.min_count must be at least 1, got {self.min_count}")
        if self.max_new < 0:
            raise ValueError(f"vocab.max_new must be >= 0 (0: no cap), got {self.max_new}")


@dataclass(frozen=True)
class DomainVocab:
    """The domain tokens chosen in a corpus, and how much of the corpus the table covers.

    Attributes:
        new_tokens: tokens to append, most frequent first.
        new_counts: their corpus counts.
        shifted_tokens: table tokens whose rows will be trained (none yet: the corpus issue adds them).
        frozen_rows: table rows that must not change.
        corpus_tokens: token occurrences in the corpus.
        covered_tokens: occurrences of tokens already in the table.
        candidates: distinct corpus tokens not in the table with at least ``min_count`` occurrences.
    """

    new_tokens: tuple[str, ...]
    new_counts: tuple[int, ...]
    shifted_tokens: tuple[str, ...]
    frozen_rows: int
    corpus_tokens: int
    covered_tokens: int
    candidates: int

    @property
    def coverage_before(self) -> float:
        """Share of corpus token occurrences that have a vector in the base table."""
        return self.covered_tokens / self.corpus_tokens if self.corpus_tokens else 0.0

    def coverage_with(self, added: set[str] | frozenset[str], counts: TokenCounts) -> float:
        """Coverage once ``added`` tokens have rows too."""
        extra = sum(counts.counts.get(t, 0) for t in added)
        return (self.covered_tokens + extra) / self.corpus_tokens if self.corpus_tokens else 0.0


def select_new_tokens(counts: TokenCounts, table: EmbeddingTable, options: VocabOptions) -> DomainVocab:
    """Pick the corpus tokens with at least ``min_count`` occurrences that the table lacks.

    Ties in count are broken alphabetically, so the choice is deterministic.
    """
    covered = 0
    candidates: list[tuple[int, str]] = []
    for token, n in counts.counts.items():
        if token in table:
            covered += n
        elif n >= options.min_count:
            candidates.append((-n, token))
    candidates.sort()
    chosen = candidates[: options.max_new] if options.max_new else candidates
    return DomainVocab(
        new_tokens=tuple(t for _, t in chosen),
        new_counts=tuple(-n for n, _ in chosen),
        shifted_tokens=(),
        frozen_rows=len(table),
        corpus_tokens=counts.total,
        covered_tokens=covered,
        candidates=len(candidates),
    )
