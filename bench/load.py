"""Benchmark: load time and peak memory of word2vec tables, ours side by side with gensim's.

Generates (once, seeded) a ``ROWS x DIM`` word2vec text file with 6-decimal values and its
word2vec binary form, then times each loader in a fresh child process, so that the peak RSS
(``ru_maxrss`` of the child) belongs to that loader alone:

    a. gensim ``KeyedVectors.load_word2vec_format`` on the text file;
    b. ours, text, parse cache disabled;
    c. ours, text, first load with an empty cache (parse + cache write);
    d. ours, reload from the parse cache (memory map): bare, plus a slice sum, plus a full read;
    e. gensim on the binary file;
    f. ours on the binary file.

Both files are read once beforehand, so every loader starts with its input in the page cache,
and the parse cache for the reloads is filled by an untimed first load. Repeats are interleaved
(the order alternates between repeats) and the median is reported.
Afterwards a checking child compares the matrices and tokens of ours and gensim's.

Run from the repository root:

    .venv/bin/python bench/load.py --rows 400000 --dim 300 --data-dir bench/data --repeat 3

The parent process imports nothing heavy and holds no data: on Linux a child's ``ru_maxrss``
starts from the high-water mark of the process that spawned it, so a large parent would inflate
every child's figure. Each child also reports ``VmHWM`` so that this can be checked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import peak_rss_mib, run_json, versions, vm_hwm_mib, warm_page_cache

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
GEN_BLOCK_ROWS = 8192
SLICE_ROWS = 1000
COMPARE_BLOCK_ROWS = 65536
TEXT_SPEEDUP_GOAL = 2.0
RELOAD_SPEEDUP_GOAL = 20.0

# English letter frequencies (per cent), for tokens that look like words.
LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
LETTER_FREQ = (12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4, 2.2, 2.0, 2.0,
               1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07)
ACCENTED = "éèàüöäñçøß"


@dataclass(frozen=True)
class Case:
    """One loader to measure; ``reference`` cases are what ``ratio_to`` compares against."""

    name: str
    label: str
    ratio_to: str


CASES = (
    Case("gensim_text", "a  gensim text (load_word2vec_format)", "gensim_text"),
    Case("ours_text", "b  ours text, cache off", "gensim_text"),
    Case("ours_first", "c  ours text, empty cache (parse+write)", "gensim_text"),
    Case("ours_reload", "d  ours cache reload (bare)", "gensim_text"),
    Case("ours_reload_slice", f"d  ours cache reload + {SLICE_ROWS}-row slice sum", "gensim_text"),
    Case("ours_reload_read", "d  ours cache reload + full read (sum)", "gensim_text"),
    Case("gensim_bin", "e  gensim binary (load_word2vec_format)", "gensim_bin"),
    Case("ours_bin", "f  ours binary", "gensim_bin"),
)
# Child processes to run per repeat; ``ours_reload`` also yields ``ours_reload_slice``.
CHILD_RUNS = ("gensim_text", "ours_text", "ours_first", "ours_reload", "ours_reload_read", "gensim_bin",
              "ours_bin")


# -- measurement helpers (children) ------------------------------------------------------------




def sample(seconds: float, base: float) -> dict[str, float | None]:
    """A measurement: elapsed seconds, peak RSS now, and the peak RSS before the load began."""
    return {"seconds": seconds, "peak_mib": peak_rss_mib(), "base_mib": base, "hwm_mib": vm_hwm_mib()}


def file_paths(data_dir: Path, rows: int, dim: int) -> tuple[Path, Path]:
    """The text and binary files of a ``rows x dim`` table."""
    stem = data_dir / f"w2v-{rows}x{dim}"
    return stem.with_suffix(".w2v.txt"), stem.with_suffix(".bin")


# -- data generation (child) -------------------------------------------------------------------
def make_tokens(rows: int, seed: int) -> list[str]:
    """``rows`` unique, seeded tokens that look like a word list: varied lengths, some capitals,
    some ``phrase_words``, some digits and some non-ASCII letters."""
    import numpy as np

    rng = np.random.default_rng(seed)
    freq = np.asarray(LETTER_FREQ) / sum(LETTER_FREQ)
    alphabet = np.frombuffer(LETTERS.encode(), dtype=np.uint8)
    unique: dict[str, None] = {}
    while len(unique) < rows:
        n = int((rows - len(unique)) * 1.2) + 64
        lengths = np.clip(rng.poisson(6.0, n) + 1, 1, 24)
        text = alphabet[rng.choice(len(alphabet), size=int(lengths.sum()), p=freq)].tobytes().decode()
        ends = np.cumsum(lengths)
        words = [text[e - k : e] for e, k in zip(ends.tolist(), lengths.tolist(), strict=True)]
        kind = rng.random(n)
        for i in np.flatnonzero(kind < 0.12).tolist():  # capitalised (names)
            words[i] = words[i].capitalize()
        for i in np.flatnonzero((kind >= 0.12) & (kind < 0.15)).tolist():  # phrases, as in Google News
            words[i] = f"{words[i].capitalize()}_{words[(i * 7919) % n].capitalize()}"
        for i in np.flatnonzero((kind >= 0.15) & (kind < 0.17)).tolist():  # with digits
            words[i] = f"{words[i]}{i % 1000}"
        for i in np.flatnonzero((kind >= 0.17) & (kind < 0.18)).tolist():  # non-ASCII letters
            word = words[i]
            at = i % len(word)
            words[i] = word[:at] + ACCENTED[i % len(ACCENTED)] + word[at + 1 :]
        unique.update(dict.fromkeys(words))
    return list(unique)[:rows]


def format_block(ints: Any) -> list[bytes]:
    """Rows of values ``ints / 1e6`` (|value| < 10) as ``' v1 v2 ...'`` with 6 decimals, vectorised."""
    import numpy as np

    n, dim = ints.shape
    chars = np.zeros((n, dim, 10), dtype=np.uint8)  # ' ', sign (0 = none), digit, '.', 6 decimals
    chars[:, :, 0] = ord(" ")
    chars[:, :, 1] = np.where(ints < 0, ord("-"), 0)
    magnitude = np.abs(ints)
    chars[:, :, 2] = ord("0") + magnitude // 1_000_000
    chars[:, :, 3] = ord(".")
    fraction = magnitude % 1_000_000
    for k in range(6):
        chars[:, :, 4 + k] = ord("0") + (fraction // 10 ** (5 - k)) % 10
    flat = chars.reshape(n, dim * 10)
    keep = flat != 0
    data = flat[keep].tobytes()
    ends = np.cumsum(keep.sum(axis=1)).tolist()
    starts = [0, *ends[:-1]]
    return [data[s:e] for s, e in zip(starts, ends, strict=True)]


def generate(text_path: Path, bin_path: Path, rows: int, dim: int, seed: int) -> None:
    """Write the text and binary files (same tokens, same values), each under a temporary name first."""
    import numpy as np

    tokens = make_tokens(rows, seed)
    rng = np.random.default_rng(seed + 1)
    text_tmp = text_path.with_name(text_path.name + ".tmp")
    bin_tmp = bin_path.with_name(bin_path.name + ".tmp")
    header = f"{rows} {dim}\n".encode()
    with open(text_tmp, "wb") as text_out, open(bin_tmp, "wb") as bin_out:
        text_out.write(header)
        bin_out.write(header)
        for start in range(0, rows, GEN_BLOCK_ROWS):
            n = min(GEN_BLOCK_ROWS, rows - start)
            values = np.clip(rng.normal(0.0, 0.15, (n, dim)), -9.999999, 9.999999)
            ints = np.rint(values * 1e6).astype(np.int64)
            encoded = [t.encode("utf-8") for t in tokens[start : start + n]]
            lines = format_block(ints)
            text_out.write(b"".join(t + line + b"\n" for t, line in zip(encoded, lines, strict=True)))
            vectors = (ints / 1e6).astype("<f4")
            bin_out.write(b"".join(t + b" " + v.tobytes() + b"\n"
                                   for t, v in zip(encoded, vectors, strict=True)))
    os.replace(text_tmp, text_path)
    os.replace(bin_tmp, bin_path)


# -- the loaders (children) --------------------------------------------------------------------
def run_child(case: str, text_path: Path, bin_path: Path, cache_dir: Path, ref_dir: Path) -> dict[str, Any]:
    """Load once as ``case`` says; return measurements keyed by case name."""
    if case.startswith("gensim"):
        return _run_gensim(case, text_path if case == "gensim_text" else bin_path, ref_dir)
    sys.path.insert(0, str(REPO_ROOT))
    from pipeline.formats import LoadOptions, load_table

    if case == "ours_bin":
        path, options = bin_path, LoadOptions(format="word2vec_binary", progress=False)
    else:  # the text cases: cache off, or on in ``cache_dir`` (empty for ours_first, filled for reloads)
        path = text_path
        options = LoadOptions(format="word2vec_text", cache=case != "ours_text", cache_dir=str(cache_dir),
                              progress=False)
    base = peak_rss_mib()
    start = time.perf_counter()
    table = load_table(path, options)
    results = {case: sample(time.perf_counter() - start, base)}
    matrix = table.matrix
    if case == "ours_reload":
        middle = matrix.shape[0] // 2
        float(matrix[middle : middle + SLICE_ROWS].sum())
        results["ours_reload_slice"] = sample(time.perf_counter() - start, base)
    elif case == "ours_reload_read":
        float(matrix.sum())
        results[case] = sample(time.perf_counter() - start, base)
    return results


def _run_gensim(case: str, path: Path, ref_dir: Path) -> dict[str, Any]:
    import numpy as np
    from gensim.models import KeyedVectors

    base = peak_rss_mib()
    start = time.perf_counter()
    kv = KeyedVectors.load_word2vec_format(str(path), binary=case == "gensim_bin")
    results = {case: sample(time.perf_counter() - start, base)}
    ref = ref_dir / f"{case}.npy"
    if not ref.exists():  # after the measurement: the checking child compares against it
        with open(ref.with_suffix(".tmp"), "wb") as handle:
            np.save(handle, kv.vectors, allow_pickle=False)
        (ref_dir / f"{case}.tokens.txt").write_text("\n".join(kv.index_to_key), encoding="utf-8")
        os.replace(ref.with_suffix(".tmp"), ref)
    return results


# -- checks (child) ----------------------------------------------------------------------------
def max_abs_diff(a: Any, b: Any) -> float:
    """max |a - b| over two equal-shape matrices, a block of rows at a time (no full temporary)."""
    import numpy as np

    if a.shape != b.shape:
        return float("inf")
    worst = 0.0
    for start in range(0, a.shape[0], COMPARE_BLOCK_ROWS):
        block = np.abs(np.asarray(a[start : start + COMPARE_BLOCK_ROWS], dtype=np.float64)
                       - np.asarray(b[start : start + COMPARE_BLOCK_ROWS], dtype=np.float64))
        worst = max(worst, float(block.max(initial=0.0)))
    return worst


def run_checks(text_path: Path, bin_path: Path, cache_dir: Path, ref_dir: Path) -> list[dict[str, Any]]:
    """Compare ours (parse, cache reload, binary) with gensim's matrices and tokens."""
    import numpy as np

    sys.path.insert(0, str(REPO_ROOT))
    from pipeline.formats import LoadOptions, load_table

    def ref(case: str) -> tuple[list[str], Any]:
        tokens = (ref_dir / f"{case}.tokens.txt").read_text(encoding="utf-8").split("\n")
        return tokens, np.load(ref_dir / f"{case}.npy", mmap_mode="r")

    g_text_tokens, g_text = ref("gensim_text")
    g_bin_tokens, g_bin = ref("gensim_bin")
    parsed = load_table(text_path, LoadOptions(format="word2vec_text", cache=False, progress=False))
    cached = load_table(text_path, LoadOptions(format="word2vec_text", cache=True, cache_dir=str(cache_dir),
                                               progress=False))
    binary = load_table(bin_path, LoadOptions(format="word2vec_binary", progress=False))
    pairs = (
        ("ours text parse vs gensim text", parsed, g_text_tokens, g_text),
        ("ours cache reload vs gensim text", cached, g_text_tokens, g_text),
        ("ours binary vs gensim binary", binary, g_bin_tokens, g_bin),
        ("ours binary vs ours text parse", binary, list(parsed.tokens), parsed.matrix),
    )
    return [{"what": what, "tokens_equal": list(table.tokens) == tokens,
             "max_abs_diff": max_abs_diff(table.matrix, matrix)} for what, table, tokens, matrix in pairs]


# -- orchestration (parent: stays small) -------------------------------------------------------
def spawn(args: argparse.Namespace, action: str, cache_dir: Path, ref_dir: Path) -> Any:
    """Run this script as a child doing ``action``; return the JSON it prints last."""
    command = [sys.executable, str(Path(__file__).resolve()),
               "--rows", str(args.rows), "--dim", str(args.dim), "--data-dir", str(args.data_dir),
               "--seed", str(args.seed), "--child", action,
               "--cache-dir", str(cache_dir), "--ref-dir", str(ref_dir)]
    return run_json(command, action)






def summarise(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], checks: list[dict[str, Any]],
              text_path: Path, bin_path: Path) -> str:
    """The printed report: a table of medians, ratios, the checks and the goals."""
    def median(case: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in runs[case])

    text_mib, bin_mib = text_path.stat().st_size / MIB, bin_path.stat().st_size / MIB
    lines = [
        f"table {args.rows:,} x {args.dim}: matrix {args.rows * args.dim * 4 / MIB:,.0f} MiB float32; "
        f"text file {text_mib:,.0f} MiB, binary file {bin_mib:,.0f} MiB",
        f"{versions()}; {os.cpu_count()} CPUs; median of {args.repeat} interleaved run(s), "
        "each loader in a fresh process",
        "speed-up = reference seconds / seconds; reference = a (gensim text) for a-d, "
        "e (gensim binary) for e-f",
        "peak RSS = ru_maxrss of the child in MiB; base = the same just before the load (after imports); "
        "+load = peak - base; RSS/ref = peak / reference's peak",
        "",
        f"{'loader':<46} {'seconds':>8} {'min-max':>13} {'speed-up':>9} {'peak RSS':>9} {'base':>5} "
        f"{'+load':>6} {'RSS/ref':>8}",
    ]
    worst_gap = 0.0
    for case in CASES:
        seconds = [float(r["seconds"]) for r in runs[case.name]]
        ref_seconds = median(case.ratio_to, "seconds")
        spread = f"{min(seconds):.2f}-{max(seconds):.2f}" if len(seconds) > 1 else ""
        peak = median(case.name, "peak_mib")
        base = median(case.name, "base_mib")
        seconds_median = statistics.median(seconds)
        lines.append(
            f"{case.label:<46} {seconds_median:>8.2f} {spread:>13} {ref_seconds / seconds_median:>8.1f}x "
            f"{peak:>9.0f} {base:>5.0f} {peak - base:>6.0f} {peak / median(case.ratio_to, 'peak_mib'):>8.2f}"
        )
        for r in runs[case.name]:
            if r.get("hwm_mib") is not None:
                worst_gap = max(worst_gap, float(r["peak_mib"]) - float(r["hwm_mib"]))
    if worst_gap > 1:
        lines.append(f"warning: ru_maxrss exceeds VmHWM by up to {worst_gap:.0f} MiB "
                     "(a high-water mark inherited from the parent)")
    lines.append("")
    lines.append("checks (ours vs gensim's matrix and tokens):")
    for check in checks:
        lines.append(f"  {check['what']:<36} tokens equal: {'yes' if check['tokens_equal'] else 'NO'}, "
                     f"max abs diff {check['max_abs_diff']:.3g}")
    gensim_text = median("gensim_text", "seconds")
    goals = (
        ("text parse (b)", "ours_text", TEXT_SPEEDUP_GOAL),
        ("cache reload, bare (d)", "ours_reload", RELOAD_SPEEDUP_GOAL),
        ("cache reload + full read (d)", "ours_reload_read", RELOAD_SPEEDUP_GOAL),
    )
    lines.append("")
    lines.append("goals (vs gensim text load):")
    for what, case_name, goal in goals:
        speedup = gensim_text / median(case_name, "seconds")
        verdict = "met" if speedup >= goal else "NOT met"
        lines.append(f"  {what:<30} goal >= {goal:>2.0f}x, measured {speedup:7.1f}x: {verdict}")
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> None:
    """Generate the data if needed, run every loader ``--repeat`` times interleaved, check, print."""
    args.data_dir.mkdir(parents=True, exist_ok=True)
    text_path, bin_path = file_paths(args.data_dir, args.rows, args.dim)
    run_dir = Path(tempfile.mkdtemp(dir=args.data_dir, prefix="run-"))
    try:
        reload_cache, ref_dir = run_dir / "cache-reload", run_dir / "ref"
        ref_dir.mkdir()
        if not (text_path.exists() and bin_path.exists()):
            print(f"generating {text_path} and {bin_path} ...", flush=True)
            started = time.perf_counter()
            spawn(args, "generate", reload_cache, ref_dir)
            print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
        warm_page_cache(text_path, bin_path)
        spawn(args, "ours_first", reload_cache, ref_dir)  # untimed: fills the cache for the reloads
        runs: dict[str, list[dict[str, Any]]] = {case.name: [] for case in CASES}
        for repeat in range(args.repeat):
            order = CHILD_RUNS if repeat % 2 == 0 else tuple(reversed(CHILD_RUNS))
            for action in order:
                cache_dir = reload_cache
                if action == "ours_first":
                    cache_dir = run_dir / f"cache-first-{repeat}"  # empty: created by the loader
                results = spawn(args, action, cache_dir, ref_dir)
                if action == "ours_first":
                    shutil.rmtree(cache_dir, ignore_errors=True)
                for name, result in results.items():
                    runs[name].append(result)
                print(f"  repeat {repeat + 1}/{args.repeat} {action:<17} {results[action]['seconds']:8.2f} s "
                      f"{results[action]['peak_mib']:7.0f} MiB", flush=True)
        checks = spawn(args, "check", reload_cache, ref_dir)
        print()
        print(summarise(args, runs, checks, text_path, bin_path))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=400_000, help="rows of the generated table")
    parser.add_argument("--dim", type=int, default=300, help="dimension of the generated table")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "bench" / "data",
                        help="where the generated files (and temporary caches) go")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each loader; the median is reported")
    parser.add_argument("--seed", type=int, default=20261124, help="seed of the generated table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ref-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows <= 0 or args.dim <= 0 or args.repeat <= 0:
        parser.error("--rows, --dim and --repeat must be positive")
    args.data_dir = args.data_dir.resolve()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is None:
        orchestrate(args)
        return
    text_path, bin_path = file_paths(args.data_dir, args.rows, args.dim)
    result: Any
    if args.child == "generate":
        generate(text_path, bin_path, args.rows, args.dim, args.seed)
        result = {}
    elif args.child == "check":
        result = run_checks(text_path, bin_path, args.cache_dir, args.ref_dir)
    else:
        result = run_child(args.child, text_path, bin_path, args.cache_dir, args.ref_dir)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
