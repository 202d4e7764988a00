"""Training inputs: the rows that train and the rows they see, the windows around every trainable
occurrence (one corpus pass, kept on disk), and the deterministic, resumable stream of pairs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from pipeline.cooccurrence import neighbour_ids, window_offsets
from pipeline.corpus import Corpus
from pipeline.counts import TokenCounts, mapped_token_ids
from pipeline.table import EmbeddingTable
from pipeline.tokenize import Tokenizer

CHUNK_WINDOWS = 32768  # windows turned into pairs (and shuffled) together
UNIGRAM_TABLE = 1 << 20  # cells of the negative-sampling table (word2vec's is 1e8; 1M keeps it cache-sized)
HELDOUT_PAIRS = 16384  # most held-out pairs scored per evaluation (the same ones every time)
_HASH = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class TrainingVocab:
    """The rows training works on, renumbered: trainable tokens first, then every other corpus token
    with a vector (the contexts). Training never touches the full table: it gathers these rows once.

    Attributes:
        tokens: local id -> token.
        trainable: how many leading local ids are trainable rows.
        anchored: per trainable row, whether it is anchored to its pretrained value (shifted tokens).
        vectors: ``(len(tokens), dim)`` float32 starting values: induced vectors for new tokens,
            the starting vectors given for shifted tokens (else their pretrained rows), pretrained rows
            for the others.
        counts: corpus count per local id.
        context_map: a la carte's map, when induction fitted one (``train.context=mapped``).
        probes: how many trainable rows, right after the new tokens, are probes: held-out table
            tokens trained as if new to judge training, never written back. As contexts they keep
            their true vectors, so the other rows train exactly as without them.
        probe_truth: ``(probes, dim)`` the probes' true vectors.
    """

    tokens: tuple[str, ...]
    trainable: int
    anchored: npt.NDArray[np.bool_]
    vectors: npt.NDArray[np.float32]
    counts: npt.NDArray[np.int64]
    context_map: npt.NDArray[np.float64] | None = None
    new: int = 0
    probes: int = 0
    probe_truth: npt.NDArray[np.float32] | None = None
    anchors: npt.NDArray[np.float32] | None = None

    def anchor_values(self) -> npt.NDArray[np.float32]:
        """``(trainable, dim)``: what each anchored row is pulled back to, its pretrained value (rows that
        are not anchored: their starting value, never used)."""
        return self.anchors if self.anchors is not None else self.vectors[: self.trainable]

    @property
    def probe_rows(self) -> slice:
        """The local ids of the probes."""
        return slice(self.new, self.new + self.probes)

    def context_vectors(self, kind: str) -> npt.NDArray[np.float32]:
        """The context vector of every local id for ``train.context``: the starting rows (probes: their
        true vectors), or them through the map (``mapped``, when there is a map)."""
        vectors = self.vectors
        if self.probes and self.probe_truth is not None:
            vectors = vectors.copy()
            vectors[self.probe_rows] = self.probe_truth
        if kind == "mapped" and self.context_map is not None:
            return (vectors @ self.context_map.astype(np.float32)).astype(np.float32)
        return vectors

    @property
    def index(self) -> dict[str, int]:
        """Token -> local id."""
        return {t: i for i, t in enumerate(self.tokens)}


def training_vocab(base: EmbeddingTable, new_tokens: Sequence[str], new_vectors: npt.NDArray[np.float32],
                   shifted: Sequence[str], counts: TokenCounts,
                   context_map: npt.NDArray[np.float64] | None = None,
                   probes: tuple[Sequence[str], npt.NDArray[np.float32]] = ((), np.zeros((0, 0), np.float32)),
                   shifted_vectors: npt.NDArray[np.float32] | None = None) -> TrainingVocab:
    """Trainable rows (new tokens, then probes, then shifted table tokens) and the corpus's other table
    tokens as contexts. ``probes`` are held-out table tokens with their induced vectors;
    ``shifted_vectors`` the shifted tokens' starting vectors (None: their pretrained rows), while
    their anchor stays the pretrained row."""
    probe_tokens, probe_vectors = probes
    trained = set(shifted)
    keep = [i for i, t in enumerate(probe_tokens) if t not in trained]  # a shifted token trains for real
    probe_tokens = [probe_tokens[i] for i in keep]
    probe_vectors = probe_vectors[keep] if len(keep) else probe_vectors[:0]
    if len(probe_tokens):
        new_vectors = np.concatenate([new_vectors, probe_vectors]).astype(np.float32)
    n_new = len(new_tokens)
    new_tokens = [*new_tokens, *probe_tokens]
    trainable = [*new_tokens, *shifted]
    taken = set(trainable)
    others = [t for t, n in counts.counts.items() if n > 0 and t not in taken and t in base]
    others.sort(key=base.index_of)  # table order: reads of the base matrix go forward
    rows = base.indices(others)
    vectors = np.empty((len(trainable) + len(others), base.dim), dtype=np.float32)
    vectors[: len(new_tokens)] = new_vectors
    pretrained_shifted = base.matrix[base.indices(shifted)] if shifted else np.zeros((0, base.dim), np.float32)
    vectors[len(new_tokens): len(trainable)] = pretrained_shifted if shifted_vectors is None else shifted_vectors
    vectors[len(trainable):] = base.matrix[rows] if len(rows) else 0
    tokens = (*trainable, *others)
    anchored = np.zeros(len(trainable), dtype=bool)
    anchored[len(new_tokens):] = True
    local_counts = np.fromiter((counts.counts.get(t, 0) for t in tokens), dtype=np.int64, count=len(tokens))
    truth = base.matrix[base.indices(probe_tokens)] if len(probe_tokens) else None
    anchors = None
    if shifted_vectors is not None:
        anchors = vectors[: len(trainable)].copy()
        anchors[len(new_tokens):] = pretrained_shifted
    return TrainingVocab(tokens, len(trainable), anchored, vectors, local_counts, context_map, n_new,
                         len(probe_tokens), truth, anchors)


@dataclass(frozen=True)
class Windows:
    """The context window around every occurrence of a trainable token, as local ids.

    Row ``i`` is ``[centre, context at -w, ..., context at -1, context at +1, ..., context at +w]``;
    ``-1`` marks a position outside the document or a token without a vector.

    Attributes:
        train: windows of the training documents (a memory map of a file under the run directory).
        heldout: windows of the held-out documents.
        window: ``w``.
    """

    train: npt.NDArray[np.int32]
    heldout: npt.NDArray[np.int32]
    window: int

    @property
    def offsets(self) -> npt.NDArray[np.int64]:
        """The position offset of each context column."""
        return window_offsets(self.window)


def _heldout_documents(document: npt.NDArray[np.int64], share: float) -> npt.NDArray[np.bool_]:
    """Whether each document (by its index in the corpus) is held out: a fixed hash, not a random draw."""
    if share <= 0:
        return np.zeros(len(document), dtype=bool)
    with np.errstate(over="ignore"):
        mixed = (document.astype(np.uint64) + np.uint64(1)) * _HASH
    return (mixed >> np.uint64(40)).astype(np.float64) / float(1 << 24) < share


def extract_windows(corpus: Corpus, tokenizer: Tokenizer, vocab: TrainingVocab, *, window: int, heldout: float,
                    directory: Path, progress: bool = True) -> Windows:
    """One pass over ``corpus``: the window around each trainable occurrence, written to ``directory``.

    Memory stays flat in the corpus size: windows go to disk a batch at a time and come back as
    memory maps. Held-out documents are chosen by a hash of their index (deterministic).
    """
    directory.mkdir(parents=True, exist_ok=True)
    width = 2 * window + 1
    paths = {"train": directory / "windows.train.i32", "heldout": directory / "windows.heldout.i32"}
    sizes = dict.fromkeys(paths, 0)
    offsets = window_offsets(window)
    first_document = 0
    with (open(paths["train"], "wb") as train_file, open(paths["heldout"], "wb") as heldout_file,
          tqdm(desc=f"windows {corpus.name}", unit="tok", unit_scale=True, disable=not progress or None,
               leave=False) as bar):
        def windows_of(ids: list[npt.NDArray[np.int64]], document: npt.NDArray[np.int64], n_documents: int
                       ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], int, int]:
            """A batch's windows and their centres' documents (counted in the batch), on a worker thread."""
            (local,) = ids
            centres = np.flatnonzero((local >= 0) & (local < vocab.trainable))
            rows = np.empty((len(centres), width), dtype=np.int32)
            rows[:, 0] = local[centres]
            rows[:, 1:] = neighbour_ids(local, document, centres, offsets)
            return rows, document[centres], n_documents, len(local)

        for rows, document, n_documents, tokens in mapped_token_ids(corpus, tokenizer, [vocab.tokens], windows_of):
            bar.update(tokens)
            document = document + first_document
            first_document += int(n_documents)
            if not len(rows):
                continue
            held = _heldout_documents(document, heldout)
            for name, part, handle in (("train", rows[~held], train_file), ("heldout", rows[held], heldout_file)):
                handle.write(np.ascontiguousarray(part).tobytes())
                sizes[name] += len(part)

    def mapped(name: str) -> npt.NDArray[np.int32]:
        if not sizes[name]:
            return np.zeros((0, width), dtype=np.int32)
        return np.memmap(paths[name], dtype=np.int32, mode="r", shape=(sizes[name], width))

    return Windows(mapped("train"), mapped("heldout"), window)


def keep_probabilities(counts: npt.NDArray[np.int64], sample: float) -> npt.NDArray[np.float64]:
    """word2vec's subsampling: the chance that an occurrence of each local id is kept."""
    if sample <= 0:
        return np.ones(len(counts))
    f = counts / max(int(counts.sum()), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (np.sqrt(f / sample) + 1) * sample / f
    return np.minimum(np.nan_to_num(keep, nan=1.0, posinf=1.0), 1.0)


def unigram_table(counts: npt.NDArray[np.int64], size: int = UNIGRAM_TABLE) -> npt.NDArray[np.int32]:
    """word2vec's negative-sampling table: local ids repeated in proportion to count ** 0.75."""
    weights = counts.astype(np.float64) ** 0.75
    if not weights.sum():
        return np.zeros(1, dtype=np.int32)
    edges = np.cumsum(weights) / weights.sum()
    return np.searchsorted(edges, (np.arange(size) + 0.5) / size).astype(np.int32)


@dataclass(frozen=True)
class Position:
    """Where the pair stream is: the epoch, the chunk of windows within it, the batch within the chunk."""

    epoch: int = 0
    chunk: int = 0
    batch: int = 0


START = Position()


class WindowStream:
    """SGNS input: every epoch a seeded permutation of the windows, cut into chunks; in each chunk,
    word2vec's subsampling and dynamic window mask the contexts, and the windows are shuffled.

    A batch is ``(centres, contexts)``: ``batch_size`` centre ids and their ``(batch_size, 2 * window)``
    context ids, ``-1`` where a context is masked. A step gathers each centre once for all its pairs.
    Every batch is a pure function of (seed, epoch, chunk, batch), so a run resumed from a
    :class:`Position` sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, windows: Windows, keep: npt.NDArray[np.float64], *, batch_size: int, epochs: int,
                 seed: int) -> None:
        self.windows = windows
        self.keep = keep
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.chunks = -(-len(windows.train) // CHUNK_WINDOWS)
        self._order: tuple[int, npt.NDArray[np.int64]] = (-1, np.zeros(0, dtype=np.int64))  # one epoch's permutation

    def chunk_windows(self, windows: npt.NDArray[np.int32], rng: np.random.Generator) -> tuple[
            npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Some windows with their contexts masked (subsampling, each centre's drawn width), shuffled;
        windows left without a context are dropped."""
        use = self._used_contexts(windows, rng)
        masked = np.where(use, windows[:, 1:], -1).astype(np.int32)
        order = rng.permutation(np.flatnonzero(use.any(axis=1)))
        return windows[:, 0][order], masked[order]

    def _used_contexts(self, windows: npt.NDArray[np.int32], rng: np.random.Generator) -> npt.NDArray[np.bool_]:
        """Which contexts of ``windows`` survive subsampling and the drawn widths: the first draws of
        :meth:`chunk_windows`, in its order."""
        centre = windows[:, 0]
        context = windows[:, 1:]
        width = rng.integers(1, self.windows.window + 1, size=len(windows))
        near = np.abs(self.windows.offsets)[None, :] <= width[:, None]
        kept_centre = rng.random(len(windows)) < self.keep[centre]
        kept_context = rng.random(context.shape) < self.keep[np.maximum(context, 0)]
        return near & kept_context & (context >= 0) & kept_centre[:, None]

    def _permutation(self, epoch: int) -> npt.NDArray[np.int64]:
        """The order of the training windows in ``epoch``: its chunks are consecutive slices of it."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.windows.train))

    def _drawn(self, epoch: int, chunk: int) -> tuple[npt.NDArray[np.int32], np.random.Generator]:
        """The windows of one chunk of one epoch, and the generator its masks and order are drawn from."""
        if self._order[0] != epoch:
            self._order = (epoch, self._permutation(epoch))
        picked = np.sort(self._order[1][chunk * CHUNK_WINDOWS: (chunk + 1) * CHUNK_WINDOWS])
        return np.asarray(self.windows.train[picked]), np.random.default_rng([self.seed, epoch, chunk])

    def chunk(self, epoch: int, chunk: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """The masked, shuffled windows of one chunk of one epoch (a pure function of seed, epoch, chunk)."""
        return self.chunk_windows(*self._drawn(epoch, chunk))

    def planned_steps(self) -> int:
        """The expected number of steps of all epochs (at least 1), which the learning rate decays over
        and the evaluations are spaced by.

        A window is kept (it has a context left) with :meth:`kept_probabilities`; each chunk of each
        epoch (its windows are known: the epoch's permutation) is expected to keep their sum, rounded
        to whole windows, and takes that many windows' batches. No mask is drawn: drawing every
        epoch's masks ahead of training to count them exactly was a pass over every window per epoch
        (0.14 s of the kit's 1.8 s of fine-tuning, most of whose epochs early stopping never reaches).
        The plan is exact when every window's fate is certain (no subsampling, and a context next to
        every centre, which every drawn width reaches); otherwise a run takes a few steps more or fewer
        (past the plan, the learning rate stays at ``min_lr``). It holds a float64 per window, as the
        epoch's permutation holds an int64.
        """
        kept = self.kept_probabilities()
        steps = 0
        for epoch in range(self.epochs):
            order = self._permutation(epoch)
            for chunk in range(self.chunks):
                expected = round(float(kept[order[chunk * CHUNK_WINDOWS: (chunk + 1) * CHUNK_WINDOWS]].sum()))
                steps += -(-expected // self.batch_size)
        return max(1, steps)

    def kept_probabilities(self) -> npt.NDArray[np.float64]:
        """Each training window's chance to keep its centre and at least one context: subsampling keeps
        each token independently, and the drawn width is uniform in ``1..window`` (what :meth:`chunk`
        draws). The windows are read a few chunks at a time; the result holds a float64 per window."""
        distance = np.abs(self.windows.offsets)
        order = np.argsort(distance, kind="stable")  # the two contexts at distance 1, then 2, ...
        width = self.windows.window
        parts = []
        for start in range(0, len(self.windows.train), CHUNK_WINDOWS * 8):
            block = np.asarray(self.windows.train[start: start + CHUNK_WINDOWS * 8])
            context = block[:, 1:][:, order]
            missed = np.where(context >= 0, 1.0 - self.keep[np.maximum(context, 0)], 1.0)
            # P(no context kept within width r), r = 1..window: the product of the rings up to r
            none_within = np.cumprod(missed.reshape(len(block), width, 2).prod(axis=2), axis=1)
            parts.append(self.keep[block[:, 0]] * (1.0 - none_within.mean(axis=1)))
        return np.concatenate(parts) if parts else np.zeros(0)

    def batches(self, start: Position = START) -> Iterator[tuple[tuple[npt.NDArray[np.generic], ...], Position]]:
        """``(centres, contexts)`` and the position after each batch, from ``start`` to the end of the last epoch."""
        for epoch in range(start.epoch, self.epochs):
            first_chunk = start.chunk if epoch == start.epoch else 0
            for chunk in range(first_chunk, self.chunks):
                centres, contexts = self.chunk(epoch, chunk)
                n_batches = -(-len(centres) // self.batch_size)
                first = start.batch if (epoch, chunk) == (start.epoch, start.chunk) else 0
                for b in range(first, n_batches):
                    cut = slice(b * self.batch_size, (b + 1) * self.batch_size)
                    after = Position(epoch, chunk, b + 1) if b + 1 < n_batches else (
                        Position(epoch, chunk + 1, 0) if chunk + 1 < self.chunks else Position(epoch + 1, 0, 0))
                    yield (centres[cut], contexts[cut]), after

    def heldout_pairs(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """A fixed sample of held-out pairs (full window, no subsampling), at most :data:`HELDOUT_PAIRS`."""
        held = np.asarray(self.windows.heldout)
        if not len(held):
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
        which, column = np.nonzero(held[:, 1:] >= 0)
        centres, contexts = held[which, 0], held[which, 1 + column]
        if len(centres) > HELDOUT_PAIRS:
            pick = np.sort(np.random.default_rng([self.seed, 1 << 30]).choice(len(centres), HELDOUT_PAIRS,
                                                                               replace=False))
            centres, contexts = centres[pick], contexts[pick]
        return centres, contexts
