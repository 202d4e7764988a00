"""Benchmark: peak memory of a full adapt (induction + fine-tuning) on a generated 3M x 300 table.

Goal (issue 5): at most 1.5x the table's bytes plus 2 GB. The table is written once under
``--data-dir`` as ``.npy`` + ``.vocab.txt`` (memory-mapped by the loader; rows ``w0 .. w{V-1}``,
normal noise); the corpus is generated text over the first 30,000 table tokens plus 300 new
tokens, each new token placed among the words of one topic so that induction has contexts.
The adapt runs as ``python -m tasks.adapt`` in a child process, exactly as a user runs it
(``tracking=disabled``, ``export.formats=[npy]``); its peak RSS is the child's ``ru_maxrss``,
which counts the table's file pages it holds mapped as well as its own allocations.

usage: bench/memory.py [--rows 3000000] [--dim 300] [--data-dir bench/data/memory]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from measure import REPO_ROOT, versions

GIB = 1 << 30
BLOCK = 200_000


def write_table(directory: Path, rows: int, dim: int) -> Path:
    """``table.npy`` + ``table.vocab.txt``, written a block at a time (never the whole matrix in memory)."""
    path = directory / f"table-{rows}x{dim}.npy"
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    matrix = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(rows, dim))
    for start in range(0, rows, BLOCK):
        stop = min(start + BLOCK, rows)
        matrix[start:stop] = rng.normal(0, 0.3, (stop - start, dim)).astype(np.float32)
    matrix.flush()
    del matrix
    path.with_suffix(".tmp.npy").rename(path)
    path.with_suffix(".vocab.txt").write_text("".join(f"w{i}\n" for i in range(rows)), encoding="utf-8")
    return path


def write_corpus(directory: Path, lines: int = 60_000) -> Path:
    """Lines of 12 words over 30,000 table tokens in 100 topics; 300 new tokens, three per topic."""
    path = directory / "corpus.txt"
    if path.exists():
        return path
    rng = np.random.default_rng(1)
    topics = rng.permutation(30_000).reshape(100, 300)
    out = []
    for i in range(lines):
        topic = i % 100
        words = [f"w{j}" for j in rng.choice(topics[topic], size=12)]
        if i % 3 == 0:
            words.insert(int(rng.integers(0, 12)), f"newtok{topic}x{int(rng.integers(0, 3))}")
        out.append(" ".join(words))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "bench" / "data" / "memory")
    parser.add_argument("overrides", nargs="*", help="extra overrides for tasks.adapt")
    args = parser.parse_args()
    table = write_table(args.data_dir, args.rows, args.dim)
    corpus = write_corpus(args.data_dir)
    table_bytes = args.rows * args.dim * 4
    run_dir = args.data_dir / "run"
    command = [sys.executable, "-m", "tasks.adapt", "embedding=file", f"embedding.path={table}", "corpus=files",
               f"corpus.paths=[{corpus}]", "tracking=disabled", "progress=false", "export.formats=[npy]",
               "train.resume=false", f"hydra.run.dir={run_dir}", *args.overrides]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"adapt failed with exit code {done.returncode}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    metrics = json.loads((run_dir / "metrics.json").read_text())
    limit = 1.5 * table_bytes + 2 * GIB
    print(f"{versions()}")
    print(f"table {args.rows:,} x {args.dim} float32 = {table_bytes / GIB:.2f} GiB (npy, memory-mapped); "
          f"corpus {metrics['corpus/tokens']:,.0f} tokens")
    print(f"adapt: {seconds:.0f} s; {metrics['vocab/new_tokens']:.0f} new tokens, "
          f"{metrics.get('train/trainable_rows', 0):.0f} trainable rows, {metrics.get('train/steps', 0):.0f} steps, "
          f"frozen max |diff| {metrics['integrity/frozen_max_abs_diff']}")
    print(f"peak RSS of the adapt: {peak / GIB:.2f} GiB = {peak / table_bytes:.2f}x the table's bytes")
    print(f"goal: <= 1.5 x table + 2 GiB = {limit / GIB:.2f} GiB: {'met' if peak <= limit else 'NOT met'}")


if __name__ == "__main__":
    main()
