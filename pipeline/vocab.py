"""The domain vocabulary: new tokens (frequent in the corpus, missing from the table) and shifted ones."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.shift import ShiftedToken, read_frequencies
from pipeline.table import EmbeddingTable

if TYPE_CHECKING:
    from pipeline.counts import TokenCounts


@dataclass(frozen=True)
class VocabOptions:
    """Which corpus tokens become new rows.

    Attributes:
        min_count: fewest occurrences for a new token.
        max_new: most new tokens, the best ranked first (0: no cap).
        rank: how new tokens are ranked: ``count`` (most frequent first) or ``specificity`` (most
            over-represented against ``general_frequencies`` first, which it needs).
        shift_top: most shifted tokens (table tokens the domain uses differently; 0: none).
        shift_threshold: the least shift score for a shifted token (the sum of two z-scores among the
            candidates: 2.0 keeps clear outliers only); None: the ``shift_top`` best, whatever their score.
        shift_min_count: fewest occurrences for a table token to be judged.
        shift_skip_common: the most common tokens in general language (by the general frequencies)
            are never shifted: function words occur among everything, so their context means say
            nothing about a shift of sense.
        general_frequencies: a ``token count`` list of general-language frequencies; None: estimate
            them from the table's row order.
    """

    min_count: int = 5
    max_new: int = 10000
    rank: str = "count"
    shift_top: int = 50
    shift_threshold: float | None = 2.0
    shift_min_count: int = 20
    shift_skip_common: int = 300
    general_frequencies: str | None = None

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise ValueError(f"vocab.min_count must be at least 1, got {self.min_count}")
        if self.max_new < 0:
            raise ValueError(f"vocab.max_new must be >= 0 (0: no cap), got {self.max_new}")
        if self.rank not in ("count", "specificity"):
            raise ValueError(f"vocab.rank must be count or specificity, got {self.rank!r}")
        if self.rank == "specificity" and self.general_frequencies is None:
            raise ValueError("vocab.rank=specificity needs vocab.general_frequencies (a 'token count' list)")
        if self.shift_top < 0:
            raise ValueError(f"vocab.shift_top must be >= 0 (0: no shifted tokens), got {self.shift_top}")
        if self.shift_skip_common < 0:
            raise ValueError(f"vocab.shift_skip_common must be >= 0, got {self.shift_skip_common}")
        if self.shift_min_count < 2:
            raise ValueError(f"vocab.shift_min_count must be at least 2, got {self.shift_min_count}")


@dataclass(frozen=True)
class DomainVocab:
    """The domain tokens chosen in a corpus, and how much of the corpus the table covers.

    Attributes:
        new_tokens: tokens to append, most frequent first.
        new_counts: their corpus counts.
        shifted: table tokens whose rows will be fine-tuned, with their scores.
        table_rows: rows of the base table.
        corpus_tokens: token occurrences in the corpus.
        covered_tokens: occurrences of tokens already in the table.
        candidates: distinct corpus tokens not in the table with at least ``min_count`` occurrences.
    """

    new_tokens: tuple[str, ...]
    new_counts: tuple[int, ...]
    shifted: tuple[ShiftedToken, ...]
    table_rows: int
    corpus_tokens: int
    covered_tokens: int
    candidates: int

    @property
    def frozen_rows(self) -> int:
        """Base-table rows that must not change: all but the shifted ones."""
        return self.table_rows - len(self.shifted)

    @property
    def shifted_tokens(self) -> tuple[str, ...]:
        """The shifted tokens, highest score first."""
        return tuple(s.token for s in self.shifted)

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

    Ranked by count, or by specificity (log domain probability over log general probability, a
    token missing from the list getting half its smallest count); ties are broken alphabetically,
    so the choice is deterministic.
    """
    covered = 0
    candidates: list[tuple[float, str, int]] = []
    general: dict[str, int] = {}
    if options.rank == "specificity" and options.general_frequencies is not None:
        general = read_frequencies(options.general_frequencies)
    floor = min(general.values(), default=1) / 2
    general_total = sum(general.values()) or 1
    for token, n in counts.counts.items():
        if token in table:
            covered += n
        elif n >= options.min_count:
            key = -float(n)
            if general:
                key = -(math.log(n / counts.total) - math.log(general.get(token, floor) / general_total))
            candidates.append((key, token, n))
    candidates.sort()
    chosen = candidates[: options.max_new] if options.max_new else candidates
    return DomainVocab(
        new_tokens=tuple(t for _, t, _ in chosen),
        new_counts=tuple(n for _, _, n in chosen),
        shifted=(),
        table_rows=len(table),
        corpus_tokens=counts.total,
        covered_tokens=covered,
        candidates=len(candidates),
    )
