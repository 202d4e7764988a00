"""Benchmark: tokenize-and-count throughput from raw text, ours side by side with gensim's ``build_vocab``.

Corpora: the real-data kit's ``python311_doc.txt`` (build it with ``sh ../shared/realdata/build.sh``)
and generated corpora of ``--sizes`` words (default 10M and 100M), written once under
``--data-dir``: Zipfian word frequencies over a ``--vocab``-word vocabulary of word-like strings
(some capitalised, some with ``'``, ``-``, ``_``, ``.`` or digits, some non-ASCII, some numbers
and overlong strings the tokenizer drops), lines of 10 to 30 words with commas and full stops.

Each corpus is also written pre-tokenized by our tokenizer (gensim's LineSentence format: a
document per line, tokens separated by spaces), so that gensim counts exactly our tokens from
input that is already tokenized. Every measurement runs in a fresh child process, so that its
peak RSS (``ru_maxrss``) belongs to it alone:

    ours                 ``count_tokens(files_corpus([raw]), Tokenizer())``, from raw text: the file
                         read in 1 MiB blocks cut at line ends (``Corpus.joined``)
    ours, cold           the same without the warm-up count that every other case does first (below)
    ours, line by line   the same with ``make_blocks=None``: a tf.data element per line, joined
                         1024 lines at a time (the route of compressed files, and of plain ones before)
    ours, TF ops         ``count_tokens_tf``: ``Tokenizer.__call__`` and ``tf.unique_with_counts``
    joined() only        iterating ``corpus.joined(...)`` as ``count_tokens`` reads it: its reading floor
    documents() only     iterating ``corpus.documents().batch(1024)``: the line-by-line reading floor
    gensim, lists        ``Word2Vec().build_vocab(corpus_iterable=lists)``, the lists read before timing
    gensim, file         ``Word2Vec().build_vocab(corpus_file=tokenized)`` (LineSentence: reads and
                         splits the tokenized file); the only gensim case for sizes over 20M words,
                         whose lists would not fit comfortably in memory

Files are read once beforehand (page cache warm). Every case but "ours, cold" first counts a
two-line file the same way, untimed: the one-off costs of a first use in a process (TensorFlow's
runtime starting: about 0.1 s) are not throughput, and an adapt has paid them by the time it counts,
having loaded the table. "ours, cold" shows them. Repeats alternate their order; medians are
reported. Sizes over 20M words run once, without the TF-ops and floor cases.

Run from the repository root:

    .venv/bin/python bench/corpus.py --repeat 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from measure import peak_rss_mib, run_json, versions, vm_hwm_mib, warm_page_cache

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
BIG = 20_000_000  # sizes above this: one run, gensim from the file only
LINES_PER_BLOCK = 100_000
SEPARATORS = (b" ", b", ", b". ")
SEPARATOR_P = (0.9, 0.065, 0.035)
MEMORY_FLAT_GOAL = 1.10  # peak RSS at the largest size / at the smallest

LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
LETTER_FREQ = (12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4, 2.2, 2.0, 2.0,
               1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07)
ACCENTED = "éèàüöäñçøßł"


@dataclasses.dataclass(frozen=True)
class Case:
    """One measurement: its child action and its label."""

    name: str
    label: str


CASES = (
    Case("ours", "ours (count_tokens)"),
    Case("ours_cold", "ours, cold (no warm-up)"),
    Case("ours_lines", "ours, line by line"),
    Case("ours_tf", "ours, TF ops (count_tokens_tf)"),
    Case("joined", "joined() only (floor)"),
    Case("documents", "documents() only (line floor)"),
    Case("gensim_lists", "gensim build_vocab, lists"),
    Case("gensim_file", "gensim build_vocab, corpus_file"),
)
SMALL_CASES = tuple(c.name for c in CASES)
BIG_CASES = ("ours", "ours_lines", "gensim_file")


# -- data generation (child) -------------------------------------------------------------------
def make_vocabulary(size: int, seed: int) -> list[str]:
    """``size`` unique word-like strings in frequency-rank order: short plain words first, then a mix."""
    import numpy as np

    rng = np.random.default_rng(seed)
    freq = np.asarray(LETTER_FREQ) / sum(LETTER_FREQ)
    alphabet = np.frombuffer(LETTERS.encode(), dtype=np.uint8)
    unique: dict[str, None] = {}
    while len(unique) < size:
        n = int((size - len(unique)) * 1.3) + 64
        lengths = np.clip(rng.poisson(5.5, n) + 1, 1, 20)
        text = alphabet[rng.choice(len(alphabet), size=int(lengths.sum()), p=freq)].tobytes().decode()
        ends = np.cumsum(lengths)
        words = [text[e - k : e] for e, k in zip(ends.tolist(), lengths.tolist(), strict=True)]
        if not unique:  # the most frequent words: the shortest plain ones
            words[:2000] = sorted(words[:2000], key=len)
        kind = rng.random(n)
        kind[:2000] = 1.0
        other = rng.integers(0, n, n)
        for i in np.flatnonzero(kind < 0.10).tolist():  # capitalised names
            words[i] = words[i].capitalize()
        for i in np.flatnonzero((kind >= 0.10) & (kind < 0.13)).tolist():  # don't, word's
            words[i] = f"{words[i]}'{'st'[i % 2]}"
        for i in np.flatnonzero((kind >= 0.13) & (kind < 0.16)).tolist():  # read-only
            words[i] = f"{words[i]}-{words[other[i]]}"
        for i in np.flatnonzero((kind >= 0.16) & (kind < 0.18)).tolist():  # snake_case, __dunder__
            words[i] = f"{words[i]}_{words[other[i]]}" if i % 3 else f"__{words[i]}__"
        for i in np.flatnonzero((kind >= 0.18) & (kind < 0.20)).tolist():  # os.path: two tokens
            words[i] = f"{words[i]}.{words[other[i]]}"
        for i in np.flatnonzero((kind >= 0.20) & (kind < 0.22)).tolist():  # x86, utf8
            words[i] = f"{words[i]}{i % 100}"
        for i in np.flatnonzero((kind >= 0.22) & (kind < 0.235)).tolist():  # non-ASCII letters
            word = words[i]
            at = i % len(word)
            words[i] = word[:at] + ACCENTED[i % len(ACCENTED)] + word[at + 1 :]
        for i in np.flatnonzero((kind >= 0.235) & (kind < 0.245)).tolist():  # numbers: no token
            words[i] = str(1900 + i % 50000)
        for i in np.flatnonzero((kind >= 0.245) & (kind < 0.25)).tolist():  # overlong: no token
            words[i] = (words[i] * 12)[:45 + i % 20]
        unique.update(dict.fromkeys(words))
    return list(unique)[:size]


def generate(raw_path: Path, tok_path: Path, words: int, vocab_size: int, seed: int) -> dict[str, Any]:
    """Write ``words`` Zipf-distributed words as text and, token for token, as our tokenizer splits them."""
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(REPO_ROOT))
    from pipeline.tokenize import Tokenizer

    vocabulary = make_vocabulary(vocab_size, seed)
    tokens = Tokenizer()(tf.constant(vocabulary))
    raw_forms = np.array([w.encode() for w in vocabulary], dtype=object)
    tok_forms = np.array([b" ".join(row) for row in tokens.to_list()], dtype=object)
    ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
    cdf = np.cumsum(1.0 / (ranks + 2.7) ** 1.07)
    cdf /= cdf[-1]
    rng = np.random.default_rng(seed + 1)
    separators = np.array([*SEPARATORS, b"\n"], dtype=object)
    tok_separators = np.array([b" ", b" ", b" ", b"\n"], dtype=object)
    raw_tmp, tok_tmp = raw_path.with_name(raw_path.name + ".tmp"), tok_path.with_name(tok_path.name + ".tmp")
    written = 0
    with open(raw_tmp, "wb") as raw_out, open(tok_tmp, "wb") as tok_out:
        while written < words:
            lengths = rng.integers(10, 31, LINES_PER_BLOCK)
            ends = np.cumsum(lengths)
            n = int(np.searchsorted(ends, words - written, side="left")) + 1  # lines to reach the size
            lengths, ends = lengths[:n], ends[:n]
            total = min(int(ends[-1]), words - written)
            ids = np.minimum(np.searchsorted(cdf, rng.random(total)), vocab_size - 1)
            kinds = rng.choice(len(SEPARATORS), size=total, p=SEPARATOR_P)
            kinds[np.minimum(ends, total) - 1] = len(SEPARATORS)  # line ends
            for forms, seps, out in ((raw_forms, separators, raw_out), (tok_forms, tok_separators, tok_out)):
                parts = np.empty(2 * total, dtype=object)
                parts[0::2] = forms[ids]
                parts[1::2] = seps[kinds]
                out.write(b"".join(parts.tolist()))
            written += total
    os.replace(raw_tmp, raw_path)
    os.replace(tok_tmp, tok_path)
    return {}


def pretokenize(raw_path: Path, tok_path: Path) -> dict[str, Any]:
    """Write a real corpus as our tokenizer splits it, a document per line (for gensim)."""
    sys.path.insert(0, str(REPO_ROOT))
    from pipeline.corpus import files_corpus
    from pipeline.counts import tokenized
    from pipeline.tokenize import Tokenizer

    tmp = tok_path.with_name(tok_path.name + ".tmp")
    with open(tmp, "wb") as out:
        for batch in tokenized(files_corpus([str(raw_path)]), Tokenizer()):
            out.write(b"".join(b" ".join(row) + b"\n" for row in batch.to_list()))
    os.replace(tmp, tok_path)
    return {}


# -- the measurements (children) ---------------------------------------------------------------
WARM_UP_LINES = (b"A warm-up: the first count in a process, over two short lines.", b"Its time is reported apart.")


def run_child(case: str, raw_path: Path, tok_path: Path) -> dict[str, Any]:
    """Measure ``case`` once: seconds, what was counted, peak RSS.

    Every case but ``ours_cold`` first counts a two-line corpus the same way, untimed (its seconds
    are reported as ``warm_up_seconds``): the one-off costs of a first use in a process, such as
    TensorFlow's runtime starting, are not throughput, and an adapt pays them before it counts
    (loading the table). ``ours_cold`` shows what they cost.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm.txt"  # raw and "tokenized" alike: gensim splits at spaces
        warm.write_bytes(b"\n".join(WARM_UP_LINES) + b"\n")
        measure = _measure_gensim if case.startswith("gensim") else _measure_ours
        warm_up = None
        if case != "ours_cold":
            warm_up = measure(case, warm, warm)["seconds"]
        result = measure(case, raw_path, tok_path)
    return {**result, "warm_up_seconds": warm_up}


def _measure_ours(case: str, raw_path: Path, tok_path: Path) -> dict[str, Any]:
    sys.path.insert(0, str(REPO_ROOT))
    import tensorflow as tf

    from pipeline.corpus import files_corpus
    from pipeline.counts import COUNT_BATCH_DOCUMENTS, COUNT_BLOCK_BYTES, count_tokens, count_tokens_tf
    from pipeline.tokenize import Tokenizer

    corpus = files_corpus([str(raw_path)])  # fingerprints the file: outside the timing
    tokenizer = Tokenizer()
    base = peak_rss_mib()
    start = time.perf_counter()
    if case in ("joined", "documents"):
        documents = 0
        if case == "joined":
            for _, n in corpus.joined(COUNT_BATCH_DOCUMENTS, COUNT_BLOCK_BYTES):
                documents += n
        else:
            for batch in corpus.documents().batch(1024).prefetch(tf.data.AUTOTUNE):
                documents += int(batch.shape[0])
        seconds = time.perf_counter() - start
        tokens, distinct = None, None
    else:
        if case == "ours_lines":
            corpus = dataclasses.replace(corpus, make_blocks=None)
        count = count_tokens_tf if case.startswith("ours_tf") else count_tokens
        counts = count(corpus, tokenizer, progress=False)
        seconds = time.perf_counter() - start
        tokens, distinct, documents = counts.total, len(counts.counts), counts.documents
    return {"seconds": seconds, "tokens": tokens, "distinct": distinct, "documents": documents,
            "peak_mib": peak_rss_mib(), "base_mib": base, "hwm_mib": vm_hwm_mib()}


def _measure_gensim(case: str, raw_path: Path, tok_path: Path) -> dict[str, Any]:
    from gensim.models import Word2Vec

    model = Word2Vec()  # the defaults: vector_size 100, min_count 5
    sentences = None
    if case == "gensim_lists":
        with open(tok_path, encoding="utf-8") as f:
            sentences = [line.split() for line in f]
    base = peak_rss_mib()
    scan = model.scan_vocab
    scan_seconds = []

    def timed_scan(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = scan(*args, **kwargs)
        scan_seconds.append(time.perf_counter() - started)
        return result

    model.scan_vocab = timed_scan
    start = time.perf_counter()
    if sentences is not None:
        model.build_vocab(corpus_iterable=sentences, keep_raw_vocab=True)
    else:
        model.build_vocab(corpus_file=str(tok_path), keep_raw_vocab=True)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "scan_seconds": scan_seconds[0], "tokens": model.corpus_total_words,
            "distinct": len(model.raw_vocab), "documents": model.corpus_count, "peak_mib": peak_rss_mib(),
            "base_mib": base, "hwm_mib": vm_hwm_mib()}


# -- orchestration (parent: stays small) -------------------------------------------------------
def spawn(action: str, raw_path: Path, tok_path: Path, extra: list[str] | None = None) -> Any:
    """Run this script as a child doing ``action``; return the JSON it prints last."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", action, "--raw", str(raw_path),
               "--tokenized", str(tok_path), *(extra or [])]
    return run_json(command, action)






def label_of(words: int) -> str:
    return f"gen {words / 1e6:g}M"


def prepare_corpora(args: argparse.Namespace) -> list[tuple[str, Path, Path, tuple[str, ...], int]]:
    """(label, raw file, tokenized file, cases, runs) of every corpus, generating what is missing."""
    args.data_dir.mkdir(parents=True, exist_ok=True)
    corpora = []
    kit = args.kit.expanduser()
    if not kit.is_file():
        raise SystemExit(f"{kit}: the real-data kit's corpus is missing; build it with "
                         "`sh /work/shared/realdata/build.sh ~/.cache/realdata`")
    kit_tok = args.data_dir / f"kit-{kit.stem}.tok.txt"
    if not kit_tok.exists():
        print(f"pre-tokenizing {kit} -> {kit_tok} ...", flush=True)
        spawn("pretokenize", kit, kit_tok)
    corpora.append((f"kit {kit.stem}", kit, kit_tok, SMALL_CASES, args.repeat))
    for words in args.sizes:
        raw = args.data_dir / f"gen-{words}-v{args.vocab}-s{args.seed}.txt"
        tok = raw.with_suffix(".tok.txt")
        if not (raw.exists() and tok.exists()):
            print(f"generating {raw} and {tok} ...", flush=True)
            started = time.perf_counter()
            spawn("generate", raw, tok, ["--words", str(words), "--vocab", str(args.vocab), "--seed", str(args.seed)])
            print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
        big = words > BIG
        corpora.append((label_of(words), raw, tok, BIG_CASES if big else SMALL_CASES, 1 if big else args.repeat))
    return corpora


def summarise(args: argparse.Namespace, results: dict[str, dict[str, list[dict[str, Any]]]],
              files: dict[str, Path]) -> str:
    """The printed report: a table of medians per corpus, ratios to gensim, memory, the goals."""
    def median(label: str, case: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in results[label][case])

    lines = [
        f"{versions()}; {os.cpu_count()} CPUs; each measurement in a fresh process; median of the runs",
        "tok/s = tokens counted / seconds (ours' token count for every row of a corpus); MB/s = raw file MB / s;",
        "vs gensim = tok/s / gensim lists' tok/s (gensim file's where lists were not run);",
        "peak = ru_maxrss of the child in MiB, base = the same after imports (gensim lists: after reading the lists)",
        "",
        f"{'corpus':<20} {'case':<32} {'runs':>4} {'seconds':>8} {'Mtok/s':>7} {'MB/s':>6} {'vs gensim':>9} "
        f"{'peak':>6} {'base':>5} {'tokens':>12} {'distinct':>9}",
    ]
    verdicts = []
    worst_gap = 0.0
    for label, cases in results.items():
        size_mb = files[label].stat().st_size / 1e6
        tokens = median(label, "ours", "tokens")
        reference = "gensim_lists" if "gensim_lists" in cases else "gensim_file"
        reference_rate = tokens / median(label, reference, "seconds")
        for case in CASES:
            runs = cases.get(case.name)
            if not runs:
                continue
            seconds = median(label, case.name, "seconds")
            counted = runs[0]["tokens"]
            distinct = runs[0]["distinct"]
            lines.append(
                f"{label:<20} {case.label:<32} {len(runs):>4} {seconds:>8.2f} {tokens / seconds / 1e6:>7.2f} "
                f"{size_mb / seconds:>6.1f} {tokens / seconds / reference_rate:>8.2f}x "
                f"{median(label, case.name, 'peak_mib'):>6.0f} {median(label, case.name, 'base_mib'):>5.0f} "
                f"{'' if counted is None else f'{counted:,}':>12} {'' if distinct is None else f'{distinct:,}':>9}"
            )
            for r in runs:
                if r.get("hwm_mib") is not None:
                    worst_gap = max(worst_gap, float(r["peak_mib"]) - float(r["hwm_mib"]))
            if case.name.startswith("gensim"):
                scan = statistics.median(float(r["scan_seconds"]) for r in runs)
                lines.append(f"{'':<20}   of which scan_vocab {scan:.2f} s ({tokens / scan / 1e6:.2f} Mtok/s)")
            if case.name in ("ours", "gensim_lists", "gensim_file"):
                warm_up = statistics.median(float(r["warm_up_seconds"]) for r in runs)
                lines.append(f"{'':<20}   after an untimed warm-up count of 2 lines: {warm_up:.3f} s")
        counted = [runs[0] for name, runs in cases.items() if name not in ("joined", "documents")]
        same = all(r["tokens"] == cases["ours"][0]["tokens"] for r in counted)
        same_distinct = all(r["distinct"] == cases["ours"][0]["distinct"] for r in counted)
        lines.append(f"{'':<20}   same token count in every row: {'yes' if same else 'NO'}; "
                     f"same distinct tokens: {'yes' if same_distinct else 'NO'}")
        ours_rate = tokens / median(label, "ours", "seconds")
        verdicts.append(f"  {label:<20} ours {ours_rate / 1e6:5.2f} Mtok/s vs {reference.replace('_', ' ')} "
                        f"{reference_rate / 1e6:5.2f} Mtok/s: {ours_rate / reference_rate:.2f}x, "
                        f"{'met' if ours_rate >= reference_rate else 'NOT met'}")
        if "ours_cold" in cases:
            cold_rate = tokens / median(label, "ours_cold", "seconds")
            verdicts.append(f"  {'':<20} cold, with first-use costs: {cold_rate / 1e6:5.2f} Mtok/s, "
                            f"{cold_rate / reference_rate:.2f}x, "
                            f"{'met' if cold_rate >= reference_rate else 'NOT met'}")
        if "ours_lines" in cases:
            lines_rate = tokens / median(label, "ours_lines", "seconds")
            verdicts.append(f"  {'':<20} line by line: {lines_rate / 1e6:5.2f} Mtok/s, "
                            f"{lines_rate / reference_rate:.2f}x, "
                            f"{'met' if lines_rate >= reference_rate else 'NOT met'}")
    if worst_gap > 1:
        lines.append(f"warning: ru_maxrss exceeds VmHWM by up to {worst_gap:.0f} MiB")
    lines += ["", "goal 1: our raw-text tokens/s at least gensim build_vocab's on tokenized input"]
    lines += verdicts
    generated = [label for label in results if label.startswith("gen ")]
    if len(generated) >= 2:
        small, large = generated[0], generated[-1]
        lines += ["", f"goal 2: our peak memory flat when the corpus grows ({small} -> {large}), "
                  f"within {MEMORY_FLAT_GOAL:.2f}x"]
        for name in ("ours", "ours_lines"):
            a, b = median(small, name, "peak_mib"), median(large, name, "peak_mib")
            lines.append(f"  {name:<13} peak {a:6.0f} MiB -> {b:6.0f} MiB: {b / a:.2f}x, "
                         f"{'met' if b / a <= MEMORY_FLAT_GOAL else 'NOT met'}")
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> None:
    """Prepare the corpora, run every case (repeats interleaved), print the table."""
    corpora = prepare_corpora(args)
    started_load = os.getloadavg()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    files: dict[str, Path] = {}
    for label, raw, tok, cases, runs in corpora:
        files[label] = raw
        results[label] = {case: [] for case in cases}
        warm_page_cache(raw, tok)
        for repeat in range(runs):
            order = cases if repeat % 2 == 0 else tuple(reversed(cases))
            for case in order:
                result = spawn(case, raw, tok)
                results[label][case].append(result)
                print(f"  {label:<20} {repeat + 1}/{runs} {case:<13} {result['seconds']:8.2f} s "
                      f"{result['peak_mib']:7.0f} MiB", flush=True)
    print()
    print(summarise(args, results, files))
    ended_load = os.getloadavg()
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in started_load)} at the start, "
          f"{' '.join(f'{x:.2f}' for x in ended_load)} at the end (the machine's other users)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--kit", type=Path, default=Path("~/.cache/realdata/corpora/python311_doc.txt"),
                        help="the real-data kit's corpus")
    parser.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")],
                        default=[10_000_000, 100_000_000], help="words of the generated corpora, comma-separated")
    parser.add_argument("--vocab", type=int, default=300_000, help="vocabulary of the generated corpora")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "bench" / "data",
                        help="where the generated and pre-tokenized files go")
    parser.add_argument("--repeat", type=int, default=3, help=f"runs per case up to {BIG:,} words; the median "
                        "is reported")
    parser.add_argument("--seed", type=int, default=20261124, help="seed of the generated corpora")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tokenized", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--words", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat <= 0 or args.vocab <= 0 or any(s <= 0 for s in args.sizes):
        parser.error("--repeat, --vocab and --sizes must be positive")
    args.data_dir = args.data_dir.resolve()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is None:
        orchestrate(args)
        return
    result: Any
    if args.child == "generate":
        result = generate(args.raw, args.tokenized, args.words, args.vocab, args.seed)
    elif args.child == "pretokenize":
        result = pretokenize(args.raw, args.tokenized)
    else:
        result = run_child(args.child, args.raw, args.tokenized)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
