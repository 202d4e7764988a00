"""Vectors for new tokens: a la carte from their contexts, subword n-grams, the additive baseline, or noise."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pipeline.errors import InputError
from pipeline.subword import SubwordModel, fit_subword
from pipeline.table import EmbeddingTable, row_norms

if TYPE_CHECKING:
    from pipeline.cooccurrence import ContextCounts
    from pipeline.counts import TokenCounts

log = logging.getLogger(__name__)

METHODS = ("auto", "alacarte", "mean_context", "subword", "random")
CONTEXT_WEIGHTS = ("none", "sif")


@dataclass(frozen=True)
class InduceOptions:
    """How new tokens get their first vector.

    Attributes:
        method: ``auto`` (a la carte where a token has ``min_contexts`` in-table contexts, blended
            with its subword vector; the subword vector alone otherwise; ``mean_context`` when the
            corpus is too small to fit a la carte's map), ``alacarte`` (the same, but a corpus too
            small to fit the map is an error), ``mean_context`` (the mean pretrained vector of the
            contexts: the additive baseline), ``subword`` (character n-grams learned from the
            table), ``random`` (normal noise at the table's scale: the floor).
        window: context tokens on each side.
        min_contexts: fewest in-table context occurrences for a context-based vector.
        fit_min_count: fewest corpus occurrences of a table token used to fit a la carte's map.
        fit_weight: each fitting token weighs ``count ** fit_weight`` in the least squares.
        ridge: ridge term of the fit, per fitting token.
        context_weight: ``none``, or ``sif`` (a context token weighs ``a / (a + p)``, ``p`` its
            corpus probability: very frequent contexts count less).
        sif_a: the ``a`` of ``sif``.
        subword_weight: weight of the unit subword vector added to the unit a la carte vector
            (0: a la carte alone).
        shift_weight: a shifted table token starts from its unit pretrained vector plus this weight
            times its unit a la carte vector (from its domain contexts), scaled back to the pretrained
            norm (0: shifted rows start from their pretrained value). Needs a la carte's map.
        ngram_min: shortest character n-gram.
        ngram_max: longest character n-gram.
        subword_ridge: ridge term of the subword fit.
        subword_rank: the subword model fits the table rows' projection on their leading
            ``subword_rank`` directions (right singular vectors), for a fit that costs in proportion;
            0, or the table's dimension or more: the rows as they are.
        morphology_weight: weight of the unit vector of a token's table base, added to its unit induced
            vector: the mean of its parts' rows for a compound whose every part is a table token
            (``big-endian``, ``read_only``), else the row of the table token it inflects (``buffers``
            -> ``buffer``, ``caching`` -> ``cache``; :data:`SUFFIXES`). A token with a base and no other
            vector is placed by its base alone. 0: off. Not for ``mean_context`` and ``random``.
        subword_fit_rows: the subword model learns from at most this many leading table rows.
        selftest_size: frequent table tokens held out, induced as if new and compared with their
            true vectors (0: no self-test).
        seed: seeds the self-test's sample and ``random``.
    """

    method: str = "auto"
    window: int = 10
    min_contexts: int = 3
    fit_min_count: int = 5
    fit_weight: float = 0.5
    ridge: float = 0.0
    context_weight: str = "sif"
    sif_a: float = 1e-3
    subword_weight: float = 0.5
    shift_weight: float = 1.0
    ngram_min: int = 3
    ngram_max: int = 6
    subword_ridge: float = 0.02
    subword_rank: int = 256
    morphology_weight: float = 2.0
    subword_fit_rows: int = 200000
    selftest_size: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"induce.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.window < 1:
            raise ValueError(f"induce.window must be at least 1, got {self.window}")
        if self.context_weight not in CONTEXT_WEIGHTS:
            raise ValueError(f"induce.context_weight must be none or sif, got {self.context_weight!r}")
        for name in ("min_contexts", "fit_min_count", "subword_fit_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"induce.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("ridge", "subword_weight", "shift_weight", "subword_ridge", "selftest_size", "fit_weight",
                     "morphology_weight", "subword_rank"):
            if getattr(self, name) < 0:
                raise ValueError(f"induce.{name} must be >= 0, got {getattr(self, name)}")
        if self.sif_a <= 0:
            raise ValueError(f"induce.sif_a must be positive, got {self.sif_a}")
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise ValueError(f"induce.ngram_min must be in 1..ngram_max ({self.ngram_max}), got {self.ngram_min}")


@dataclass(frozen=True)
class InducedVectors:
    """One vector per new token that could be placed.

    Attributes:
        tokens: the placed tokens, in the vocabulary's order.
        vectors: ``(len(tokens), dim)`` float32.
        methods: the method that placed each token (``alacarte+subword``, ``alacarte``, ``subword``,
            ``mean_context`` or ``random``).
        contexts: in-table context occurrences behind each vector.
        unplaced: new tokens no method could place (no in-table context and no known n-gram).
        context_map: a la carte's ``dim x dim`` map from a context mean to a vector, when one was fitted
            (fine-tuning with ``train.context=mapped`` scores contexts through it).
        subword: the n-gram model fitted on the table, when the method fitted one (a registered model
            can give unknown tokens its vectors).
    """

    tokens: tuple[str, ...]
    vectors: npt.NDArray[np.float32]
    methods: tuple[str, ...]
    contexts: tuple[int, ...]
    unplaced: tuple[str, ...]
    context_map: npt.NDArray[np.float64] | None = None
    subword: SubwordModel | None = None


def fitting_tokens(counts: TokenCounts, table: EmbeddingTable, options: InduceOptions) -> tuple[str, ...]:
    """Table tokens frequent enough in the corpus to fit a la carte's map, most frequent first."""
    if options.method not in ("auto", "alacarte"):
        return ()
    chosen = sorted((-n, t) for t, n in counts.counts.items() if n >= options.fit_min_count and t in table)
    return tuple(t for _, t in chosen)


def _unit(matrix: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix, dtype=np.float64) / np.maximum(norms, 1e-12)


def context_weights(table: EmbeddingTable, counts: TokenCounts, options: InduceOptions,
                    hidden: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Each table row's weight as a context: 1, or SIF's ``a / (a + p)``; 0 for hidden rows."""
    weights = np.ones(len(table), dtype=np.float64)
    if options.context_weight == "sif":
        p = np.array([counts.counts.get(t, 0) for t in table.tokens], dtype=np.float64) / max(counts.total, 1)
        weights = options.sif_a / (options.sif_a + p)
    weights[hidden] = 0.0
    return weights


# (suffix, what replaces it), tried in this order: the longer stem first (modes -> mode before mod,
# coded -> code before cod, caching -> cache before cach)
SUFFIXES = (("ies", "y"), ("s", ""), ("es", ""), ("d", ""), ("ed", ""), ("ing", "e"), ("ing", ""),
            ("ers", ""), ("er", ""), ("ly", ""))
_COMPOUND = re.compile(r"[-_]")


def _row_scale(table: EmbeddingTable) -> float:
    """The median norm of the table's first rows (at most 100,000)."""
    norms = row_norms(table.matrix[: min(len(table), 100000)])
    return float(np.median(norms)) if len(norms) else 1.0


def morphology_bases(table: EmbeddingTable, tokens: Sequence[str], hidden: Sequence[str] = ()
                     ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Each token's unit base vector from the table (zeros where it has none) and whether it has one.

    A compound of two or more parts joined by ``-`` or ``_``, every part a table token, has the mean of
    its parts' unit rows. Otherwise a token that ends in one of :data:`SUFFIXES`, whose stem (at least
    three characters, with the suffix's replacement) is a table token, has that token's unit row.
    ``hidden`` tokens are not bases (the self-test holds them out), nor are rows of zeros.
    """
    hide = set(hidden)

    def row(token: str) -> int:
        return -1 if token in hide or token not in table else table.index_of(token)

    owners: list[int] = []  # each base row's token, in token order
    rows: list[int] = []
    for i, token in enumerate(tokens):
        parts = [part for part in _COMPOUND.split(token) if part]
        found: list[int] = []
        if len(parts) >= 2:
            found = [row(part) for part in parts]
            if min(found) < 0:
                found = []
        if not found:
            for suffix, replacement in SUFFIXES:
                stem = token[: -len(suffix)] + replacement
                if token.endswith(suffix) and len(stem) >= 3 and stem != token and (stem_row := row(stem)) >= 0:
                    found = [stem_row]
                    break
        owners += [i] * len(found)
        rows += found
    bases = np.zeros((len(tokens), table.dim), dtype=np.float64)
    if not rows:
        return bases, np.zeros(len(tokens), dtype=bool)
    # every base row made unit at once, then each token's rows averaged (its rows are consecutive)
    units = _unit(np.asarray(table.matrix[rows], dtype=np.float64))
    first = np.flatnonzero(np.r_[True, np.diff(owners) != 0])
    which = np.asarray(owners)[first]
    means = np.add.reduceat(units, first, axis=0) / np.diff(np.r_[first, len(rows)])[:, None]
    norms = np.linalg.norm(means, axis=1)
    has = norms > 0  # a base of zero rows is no base
    bases[which[has]] = means[has] / norms[has, None]
    found_any = np.zeros(len(tokens), dtype=bool)
    found_any[which[has]] = True
    return bases, found_any


def induce_vectors(
    contexts: ContextCounts,
    table: EmbeddingTable,
    counts: TokenCounts,
    tokens: Sequence[str],
    options: InduceOptions,
    *,
    hidden: Sequence[str] = (),
    subword: SubwordModel | None = None,
) -> InducedVectors:
    """Give each of ``tokens`` a vector by ``options.method``.

    Args:
        contexts: context counts from the corpus pass; their targets include ``tokens`` and the
            :func:`fitting_tokens`.
        table: the pretrained table.
        counts: the corpus token counts.
        tokens: the tokens to place.
        options: the method and its settings.
        hidden: table tokens to treat as unknown (the self-test holds them out): not used as
            contexts, nor to fit the map or the subword model.
        subword: the subword model to use, already fitted without ``hidden``
            (:func:`fit_table_subword`); fitted here when the method needs one and none is given.

    Raises:
        InputError: ``method=alacarte`` on a corpus too small to fit its map.
    """
    dim = table.dim
    if not tokens:
        return InducedVectors((), np.zeros((0, dim), np.float32), (), (), ())
    hidden_rows = table.indices(hidden) if hidden else np.zeros(0, dtype=np.int64)
    if options.method == "random":
        rng = np.random.default_rng(options.seed)
        scale = float(np.asarray(table.matrix[: min(len(table), 100000)]).std())
        vectors = rng.normal(0.0, scale, (len(tokens), dim)).astype(np.float32)
        return InducedVectors(tuple(tokens), vectors, ("random",) * len(tokens), (0,) * len(tokens), ())
    weights = context_weights(table, counts, options, hidden_rows)
    means, occurrences = contexts.mean_vectors(table, tokens, weights)
    enough = occurrences >= (options.min_contexts if options.method in ("auto", "alacarte") else 1)
    method = options.method
    a_map: npt.NDArray[np.float64] | None = None
    if method in ("auto", "alacarte"):
        a_map = _fit_map(contexts, weights, counts, table, options, set(hidden))
        if a_map is None:
            method = "mean_context"
    context_vectors = means if a_map is None else means @ a_map
    needs_subword = method == "subword" or (method in ("auto", "alacarte")
                                            and (options.subword_weight > 0 or not enough.all()))
    if not needs_subword:  # a la carte fell back to mean_context: a given model goes unused
        subword = None
    elif subword is None:
        subword = fit_table_subword(table, options, set(hidden))
    sub_vectors, known = subword.predict(tokens) if subword else (np.zeros((len(tokens), dim), np.float32),
                                                                   np.zeros(len(tokens), np.int64))
    vectors = np.zeros((len(tokens), dim), dtype=np.float64)
    blended = _unit(context_vectors) + options.subword_weight * _unit(sub_vectors)
    labels: list[str] = []
    placed = np.zeros(len(tokens), dtype=bool)
    for i in range(len(tokens)):
        if method == "subword" or (method in ("auto", "alacarte") and not enough[i]):
            if known[i]:
                vectors[i], placed[i] = sub_vectors[i], True
                labels.append("subword")
            else:
                labels.append("")
        elif method == "mean_context":
            if occurrences[i] > 0:
                vectors[i], placed[i] = means[i], True
                labels.append("mean_context")
            else:
                labels.append("")
        else:
            placed[i] = True
            if options.subword_weight > 0 and known[i]:
                vectors[i] = blended[i]
                labels.append("alacarte+subword")
            else:
                vectors[i] = context_vectors[i]
                labels.append("alacarte")
    if options.morphology_weight > 0 and options.method in ("auto", "alacarte", "subword"):
        bases, based = morphology_bases(table, tokens, hidden)
        # a vector placed by its base alone gets the table's typical norm (read only when one is)
        scale = _row_scale(table) if (based & ~placed).any() else 1.0
        moving = np.flatnonzero(based & placed)  # toward the base, keeping the norm the method gave
        norms = np.linalg.norm(vectors[moving], axis=1, keepdims=True)
        vectors[moving] = _unit(_unit(vectors[moving]) + options.morphology_weight * bases[moving]) * norms
        alone = np.flatnonzero(based & ~placed)  # placed by the base alone
        vectors[alone], placed[alone] = bases[alone] * scale, True
        for j in moving:
            labels[j] += "+morphology"
        for j in alone:
            labels[j] = "morphology"
    unplaced = tuple(t for t, ok in zip(tokens, placed, strict=True) if not ok)
    if unplaced:
        log.warning("%d new tokens could not be placed by %s (no in-table context%s); they get no vector (e.g. %s)",
                    len(unplaced), method, ", no known n-gram" if subword else "", ", ".join(unplaced[:5]))
    return InducedVectors(
        tokens=tuple(t for t, ok in zip(tokens, placed, strict=True) if ok),
        vectors=vectors[placed].astype(np.float32),
        methods=tuple(m for m, ok in zip(labels, placed, strict=True) if ok),
        contexts=tuple(int(n) for n in occurrences[placed]),
        unplaced=unplaced,
        context_map=a_map,
        subword=subword,
    )


def place_shifted(contexts: ContextCounts, table: EmbeddingTable, counts: TokenCounts, tokens: Sequence[str],
                  options: InduceOptions, context_map: npt.NDArray[np.float64] | None, *,
                  fit_map: bool = False) -> InducedVectors:
    """Starting vectors for shifted table tokens: each pretrained row moved toward its domain meaning.

    A token with ``min_contexts`` in-table context occurrences gets ``unit(pretrained) + shift_weight *
    unit(a la carte)``, scaled to the pretrained row's norm (method ``pretrained+alacarte``); the others,
    or all of them without a map or with ``shift_weight=0``, keep their pretrained value (method
    ``pretrained``). Every token of ``tokens`` is in the result, in order.

    Args:
        context_map: a la carte's map, as induction fitted it (None: it fitted none).
        fit_map: fit the map here when none is given and the method is a la carte's (induction had no
            new token to place, so it did not fit one).
    """
    if not tokens:
        return InducedVectors((), np.zeros((0, table.dim), np.float32), (), (), ())
    pretrained = np.asarray(table.matrix[table.indices(tokens)], dtype=np.float64)
    weights = context_weights(table, counts, options, np.zeros(0, dtype=np.int64))
    means, occurrences = contexts.mean_vectors(table, tokens, weights)
    if context_map is None and fit_map and options.shift_weight > 0 and options.method in ("auto", "alacarte"):
        context_map = _fit_map(contexts, weights, counts, table, dataclasses.replace(options, method="auto"),
                               set(), fallback="the shifted rows keep their pretrained values")
    vectors = pretrained.copy()
    moved = np.zeros(len(tokens), dtype=bool)
    if context_map is not None and options.shift_weight > 0:
        moved = occurrences >= options.min_contexts
        blended = _unit(pretrained) + options.shift_weight * _unit(means @ context_map)
        vectors[moved] = (_unit(blended) * np.linalg.norm(pretrained, axis=1, keepdims=True))[moved]
    return InducedVectors(tuple(tokens), vectors.astype(np.float32),
                          tuple("pretrained+alacarte" if m else "pretrained" for m in moved),
                          tuple(int(n) for n in occurrences), ())


def _fit_map(contexts: ContextCounts, weights: npt.NDArray[np.float64], counts: TokenCounts,
             table: EmbeddingTable, options: InduceOptions, hidden: set[str], *,
             fallback: str = "falling back to mean_context") -> npt.NDArray[np.float64] | None:
    """A la carte's map (``dim x dim``) from context means to vectors, or None (auto: logging ``fallback``)
    when it cannot be fit."""
    fit = [t for t in fitting_tokens(counts, table, options) if t not in hidden and t in contexts.index]
    means, occurrences = contexts.mean_vectors(table, fit, weights) if fit else (np.zeros((0, table.dim)),
                                                                                  np.zeros(0))
    keep = occurrences > 0
    fit = [t for t, ok in zip(fit, keep, strict=True) if ok]
    if len(fit) < table.dim:
        message = (f"a la carte needs at least {table.dim} fitting tokens (table tokens seen at least "
                   f"induce.fit_min_count={options.fit_min_count} times), the corpus has {len(fit)}")
        if options.method == "alacarte":
            raise InputError("induce.method=alacarte", message,
                             hint="use a larger corpus, lower induce.fit_min_count, or induce.method=auto")
        log.warning("%s: %s", message, fallback)
        return None
    x = means[keep]
    y = np.asarray(table.matrix[table.indices(fit)], dtype=np.float64)
    weight = np.array([counts.counts[t] for t in fit], dtype=np.float64) ** options.fit_weight
    weight /= weight.mean()
    xw = x * weight[:, None]
    gram = x.T @ xw + options.ridge * len(fit) * np.eye(table.dim)
    return np.asarray(np.linalg.solve(gram, xw.T @ y))


def uses_subword(options: InduceOptions) -> bool:
    """Whether ``options`` place every token with the help of a subword model (not only those too rare for
    a la carte): ``method=subword``, or a la carte blended with a subword vector."""
    return options.method == "subword" or (options.method in ("auto", "alacarte") and options.subword_weight > 0)


def fit_table_subword(table: EmbeddingTable, options: InduceOptions, hidden: set[str] | None = None) -> SubwordModel:
    """The subword model of ``table``'s first ``induce.subword_fit_rows`` rows, ``hidden`` tokens left out."""
    hidden = hidden or set()
    rows = min(len(table), options.subword_fit_rows)
    tokens = [t for t in table.tokens[:rows] if t not in hidden]
    vectors = np.asarray(table.matrix[table.indices(tokens)], dtype=np.float32)
    model = fit_subword(tokens, vectors, low=options.ngram_min, high=options.ngram_max, ridge=options.subword_ridge,
                        rank=options.subword_rank)
    log.info("subword model: %d n-grams from %d rows, %d CG iterations", len(model.index), len(tokens),
             model.iterations)
    return model
