"""Benchmark: one write-back of k trained rows into a V x d table, ours against the dense ways of doing it.

"Ours" is the product's ``pipeline.train.rows.scatter_rows(target, indices, rows)``: ``target[indices] = rows``
for a numpy matrix, ``variable.scatter_update(tf.IndexedSlices(rows, indices))`` for a ``tf.Variable``.
For each table size V (``--sizes``, default 10k, 100k, 1M, 3M rows; d = ``--dim``, float32) it times
one update of k = ``--rows`` rows (random unique indices, seeded, a fresh index set for every run):

    numpy matrix
      ours                      ``scatter_rows(matrix, indices, rows)`` (fancy assignment, in place)
      copy k x d, np.copyto     ``np.copyto(block, rows)`` into a separate k x d buffer: the same bytes,
                                contiguous, no indexing
      copy k x d into table     ``matrix[o:o + k] = rows``: the same bytes into the table's own memory, as
                                one contiguous run of k rows (fixed random offset o)
      copy V x d, np.copyto     the whole table into a second V x d buffer, for reference
    tf.Variable (V x d)
      ours, tf.function         a ``tf.function`` whose body is ``scatter_rows(variable, indices, rows)``,
                                called with tensors (how a training step would run it)
      ours, eager               ``scatter_rows(variable, indices, rows)`` called eagerly with numpy inputs
      tensor_scatter + assign   a ``tf.function`` doing ``v.assign(tf.tensor_scatter_nd_update(v, i, rows))``:
                                the copy-and-replace way to update a variable
      tensor_scatter, 1 elem    a ``tf.function`` returning one element of ``tf.tensor_scatter_nd_update(v,
                                i, rows)`` (an updated row, so the op cannot be pruned); the variable is not
                                changed, so this is the op alone, the full V x d result included
      dense masked assign       a ``tf.function`` doing ``v.assign(tf.where(mask[:, None], new_full, v))``;
                                the V-bool mask and the V x d ``new_full`` are built before timing (which
                                favours this case)
      copy k x d, tf assign     a ``tf.function`` doing ``w.assign(rows)`` into a k x d variable.
                                (``tf.identity`` is not measured: on CPU it forwards the buffer, copying
                                nothing.)
      empty tf.function call    a ``tf.function`` with the same arguments as ours and an empty body: the
                                floor that dispatching any ``tf.function`` costs, for reading the rows above

What is timed: ``time.perf_counter`` around one call (the ``tf.function`` call includes its dispatch; CPU
execution is synchronous, and the stateful ops of a ``tf.function`` finish before the call returns).
Before every timed run, untimed, a buffer of ``FLUSH_MIB`` MiB (over the 32 MiB L3) is rewritten, so
that no table size starts with its rows in cache. ``--warmup`` untimed runs (which also trace the
functions), then ``--repeat`` timed runs, interleaved within each group below (the order alternating);
the median is reported. GB/s = bytes of the k rows (k * d * 4) / median time for the update and
k x d copy cases: the effective bandwidth of the useful write. For the V x d copy it is V * d * 4 /
time (a copy also reads as many bytes as it writes).

Checks, after every timed and warm-up run (untimed): each case writes its own values (the original
row plus a per-case constant), so the k rows read back must equal what that case wrote, and a seeded
sample of 1,000 rows that no run touches must equal the original table. The tf.Variable is read back
densely (``tf.gather(v.value(), i)``): a gather from the variable itself is a sparse access, after which
TensorFlow copies the whole variable on every dense read ("copy-on-read mode"); the tensor_scatter and
dense baselines are spared that copy, which a training loop (whose lookups are gathers) would pay.

Memory: each group of cases (numpy; ours on tf.Variable; tensor_scatter; dense) runs at each V in its own
child process, because TensorFlow's CPU allocator keeps freed tensor memory in its pool: the dense group
peaked at about 5.3 tables' worth at V = 1M (a 3M x 300 float32 table is 3.6 GB). A group whose estimated
peak (``PEAK_TABLES``) exceeds ``MEMORY_SHARE`` of ``MemAvailable`` is skipped and reported as skipped.
The peak RSS of every child is printed.

Run from the repository root:

    .venv/bin/python bench/sparse_update.py
    .venv/bin/python bench/sparse_update.py --sizes 10000 100000 --repeat 3   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from measure import run_json, versions, vm_hwm_mib

REPO_ROOT = Path(__file__).resolve().parent.parent
FLUSH_MIB = 96
BLOCK_ROWS = 65536
CHECK_SAMPLE = 1000
FLAT_GOAL = 1.5  # ours at the largest V / ours at the smallest V, at most
SPEEDUP_GOAL = 100.0  # tensor_scatter_nd_update / ours at the largest V, at least
GB = 1e9


@dataclass(frozen=True)
class Case:
    """One way of writing (or copying) the rows; ``ratio_to`` names the row its ratio is taken against."""

    name: str
    label: str
    family: str  # "numpy" or "tf"
    ratio_to: str
    full_table_bytes: bool = False  # GB/s from V * d * 4 bytes instead of k * d * 4


CASES = (
    Case("np_ours", "numpy: ours (scatter_rows)", "numpy", "np_ours"),
    Case("np_copy", "numpy: copy k x d, np.copyto", "numpy", "np_ours"),
    Case("np_slice", "numpy: copy k x d into table, contiguous", "numpy", "np_ours"),
    Case("np_full", "numpy: copy V x d, np.copyto", "numpy", "np_ours", full_table_bytes=True),
    Case("tf_ours", "tf.Variable: ours, tf.function", "tf", "tf_ours"),
    Case("tf_ours_eager", "tf.Variable: ours, eager", "tf", "tf_ours"),
    Case("tf_tsu_assign", "tf.Variable: tensor_scatter + assign", "tf", "tf_ours"),
    Case("tf_tsu_elem", "tf.Variable: tensor_scatter, 1 elem", "tf", "tf_ours"),
    Case("tf_dense", "tf.Variable: dense masked assign", "tf", "tf_ours"),
    Case("tf_copy", "tf.Variable: copy k x d, tf assign", "tf", "tf_ours"),
    Case("tf_noop", "tf: empty tf.function call (floor)", "tf", "tf_ours"),
)
# Each case that writes table rows adds its own constant to the original rows, so a check can tell whose
# write it reads back.
OFFSETS = {"np_ours": 1.0, "tf_ours": 2.0, "tf_ours_eager": 3.0, "tf_tsu_assign": 4.0, "tf_tsu_elem": 5.0,
           "tf_dense": 6.0}


# Each group runs in its own child process, so that no group's memory (TensorFlow keeps freed tensor memory
# in its allocator's pool) adds to another's; the cases of a group are interleaved.
GROUPS = {
    "numpy": ("np_ours", "np_copy", "np_slice", "np_full"),
    "tf": ("tf_ours", "tf_ours_eager", "tf_copy", "tf_noop"),
    "tsu": ("tf_tsu_assign", "tf_tsu_elem"),
    "dense": ("tf_dense",),
}
# Peak RSS of a group's child, in tables (V x d x 4 bytes) over a base, as measured at V = 1M; a group whose
# estimate exceeds MEMORY_SHARE of the machine's available memory is skipped (the machine is shared).
PEAK_TABLES = {"numpy": 2.0, "tf": 2.4, "tsu": 3.4, "dense": 5.3}
BASE_BYTES = 1.0e9
MEMORY_SHARE = 0.85


class CheckError(AssertionError):
    """A case read back something other than what it wrote, or changed a row it should not have."""


@dataclass
class Plan:
    """The seeded inputs for one table size: index sets (one per run), the untouched sample, original rows."""

    size: int
    dim: int
    seed: int
    index_sets: list[npt.NDArray[np.int64]]
    originals: list[npt.NDArray[np.float32]]  # the table's rows at each index set, before any write
    untouched: npt.NDArray[np.int64]
    untouched_rows: npt.NDArray[np.float32]
    slice_at: int


def table_blocks(size: int, dim: int, seed: int) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
    """The ``size x dim`` float32 table of uniform values (the same for the same seed), a block of rows at a time."""
    for number, start in enumerate(range(0, size, BLOCK_ROWS)):
        rows = min(BLOCK_ROWS, size - start)
        yield start, np.random.default_rng([seed, number]).random((rows, dim), dtype=np.float32)


def make_table(size: int, dim: int, seed: int) -> npt.NDArray[np.float32]:
    """The whole table of ``table_blocks`` as one numpy matrix."""
    table = np.empty((size, dim), dtype=np.float32)
    for start, block in table_blocks(size, dim, seed):
        table[start : start + block.shape[0]] = block
    return table


def make_plan(size: int, dim: int, k: int, runs: int, seed: int) -> Plan:
    """Draw ``runs`` sets of ``k`` unique indices, a contiguous block and an untouched sample of rows, and read
    the table's original rows at those places (from ``table_blocks``, a block at a time)."""
    rng = np.random.default_rng(seed + 1)
    index_sets = [rng.choice(size, size=k, replace=False).astype(np.int64) for _ in range(runs)]  # random order
    slice_at = int(rng.integers(0, size - k + 1))
    touched = np.zeros(size, dtype=bool)
    for s in index_sets:
        touched[s] = True
    touched[slice_at : slice_at + k] = True
    free = np.flatnonzero(~touched)
    untouched = rng.choice(free, size=min(CHECK_SAMPLE, free.size), replace=False).astype(np.int64)
    wanted = [*index_sets, untouched]
    found = [np.empty((w.size, dim), dtype=np.float32) for w in wanted]
    for start, block in table_blocks(size, dim, seed):
        for where, rows in zip(wanted, found, strict=True):
            hit = (where >= start) & (where < start + block.shape[0])
            rows[hit] = block[where[hit] - start]
    return Plan(size, dim, seed, index_sets, found[:-1], untouched, found[-1], slice_at)


def expected_rows(plan: Plan, case: str, run: int) -> npt.NDArray[np.float32]:
    """What ``case`` writes at ``plan.index_sets[run]``: the original rows plus the case's constant."""
    return plan.originals[run] + np.float32(OFFSETS[case])


def check(case: str, plan: Plan, run: int, read_rows: Callable[[npt.NDArray[np.int64]], Any]) -> None:
    """Raise ``CheckError`` unless the run's rows hold the case's values and the untouched sample is unchanged."""
    got = np.asarray(read_rows(plan.index_sets[run]))
    if not np.array_equal(got, expected_rows(plan, case, run)):
        raise CheckError(f"{case}, V={plan.size:,}, run {run}: the written rows differ from what was written")
    if not np.array_equal(np.asarray(read_rows(plan.untouched)), plan.untouched_rows):
        raise CheckError(f"{case}, V={plan.size:,}, run {run}: rows that no run wrote have changed")


class Flusher:
    """Evicts the CPU caches by rewriting a buffer larger than the last-level cache."""

    def __init__(self, mib: int) -> None:
        self.buffer = np.ones(mib * (1 << 20) // 8, dtype=np.float64)

    def __call__(self) -> None:
        self.buffer += 1.0


def timed(run: Callable[[], Any], flush: Flusher) -> float:
    """Seconds of one call of ``run``, caches flushed beforehand."""
    flush()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def run_interleaved(names: list[str], warmup: int, repeat: int,
                    one: Callable[[str, int], float]) -> dict[str, list[float]]:
    """Call ``one(case, run)`` for every case, run after run (the order reversed every other run); return the
    seconds of the timed runs (those after ``warmup``) per case."""
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + repeat):
        for name in names if r % 2 == 0 else names[::-1]:
            seconds = one(name, r)
            if r >= warmup:
                results[name].append(seconds)
    return results


# -- numpy phase ------------------------------------------------------------------------------------
def numpy_group(plan: Plan, names: list[str], warmup: int, repeat: int, flush: Flusher) -> dict[str, list[float]]:
    """Time the numpy cases on a numpy table; return seconds per case (timed runs only)."""
    sys.path.insert(0, str(REPO_ROOT))
    from pipeline.train.rows import scatter_rows

    k = plan.index_sets[0].size
    matrix = make_table(plan.size, plan.dim, plan.seed)
    full_copy = np.empty_like(matrix)
    block = np.empty((k, plan.dim), dtype=np.float32)
    rows = [expected_rows(plan, "np_ours", r) for r in range(len(plan.index_sets))]

    def read(indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return matrix[indices]

    def one(case: str, r: int) -> float:
        if case == "np_ours":
            seconds = timed(lambda: scatter_rows(matrix, plan.index_sets[r], rows[r]), flush)
            check(case, plan, r, read)
        elif case == "np_copy":
            seconds = timed(lambda: np.copyto(block, rows[r]), flush)
            if not np.array_equal(block, rows[r]):
                raise CheckError(f"np_copy, V={plan.size:,}: the block differs from its source")
        elif case == "np_slice":
            seconds = timed(lambda: matrix.__setitem__(slice(plan.slice_at, plan.slice_at + k), rows[r]), flush)
            if not np.array_equal(matrix[plan.slice_at : plan.slice_at + k], rows[r]):
                raise CheckError(f"np_slice, V={plan.size:,}: the table's slice differs from its source")
        else:  # np_full
            seconds = timed(lambda: np.copyto(full_copy, matrix), flush)
            sample = plan.untouched
            if not np.array_equal(full_copy[sample], matrix[sample]):
                raise CheckError(f"np_full, V={plan.size:,}: the copy differs from the table")
        return seconds

    return run_interleaved(names, warmup, repeat, one)


# -- tf.Variable phase ------------------------------------------------------------------------------
def tf_group(plan: Plan, names: list[str], warmup: int, repeat: int, flush: Flusher) -> dict[str, list[float]]:
    """Time the tf.Variable cases on a variable holding the original table; return seconds per case."""
    import tensorflow as tf

    sys.path.insert(0, str(REPO_ROOT))
    from pipeline.train.rows import scatter_rows

    k = plan.index_sets[0].size
    runs = len(plan.index_sets)
    # Filled a block at a time, in place: converting a whole numpy table would hold three copies at once.
    variable = tf.Variable(tf.zeros((plan.size, plan.dim), dtype=tf.float32), name="table")
    for start, block in table_blocks(plan.size, plan.dim, plan.seed):
        variable[start : start + block.shape[0]].assign(block)
    # The dense way's "whole updated table", built untimed.
    new_full = variable + OFFSETS["tf_dense"] if "tf_dense" in names else None
    small = tf.Variable(tf.zeros((k, plan.dim), dtype=tf.float32), name="block")

    index_1d = [tf.constant(s) for s in plan.index_sets]
    index_2d = [tf.constant(s[:, None]) for s in plan.index_sets]
    rows_np = {case: [expected_rows(plan, case, r) for r in range(runs)]
               for case in ("tf_ours", "tf_ours_eager", "tf_tsu_assign", "tf_tsu_elem")}
    rows_tf = {case: [tf.constant(a) for a in arrays] for case, arrays in rows_np.items()}
    masks = []
    for s in plan.index_sets if "tf_dense" in names else []:
        mask = np.zeros(plan.size, dtype=bool)
        mask[s] = True
        masks.append(tf.constant(mask))

    spec_1d = tf.TensorSpec([k], tf.int64)
    spec_2d = tf.TensorSpec([k, 1], tf.int64)
    spec_rows = tf.TensorSpec([k, plan.dim], tf.float32)

    @tf.function(autograph=False, input_signature=[spec_1d, spec_rows])
    def ours_step(indices: tf.Tensor, rows: tf.Tensor) -> None:
        scatter_rows(variable, indices, rows)

    @tf.function(autograph=False, input_signature=[spec_2d, spec_rows])
    def tsu_assign(indices: tf.Tensor, rows: tf.Tensor) -> None:
        variable.assign(tf.tensor_scatter_nd_update(variable, indices, rows))

    @tf.function(autograph=False, input_signature=[spec_2d, spec_rows])
    def tsu_elem(indices: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
        return tf.tensor_scatter_nd_update(variable, indices, rows)[indices[0, 0], 0]

    @tf.function(autograph=False,
                 input_signature=[tf.TensorSpec([plan.size], tf.bool), tf.TensorSpec([plan.size, plan.dim])])
    def dense(mask: tf.Tensor, full: tf.Tensor) -> None:
        variable.assign(tf.where(mask[:, None], full, variable))

    @tf.function(autograph=False, input_signature=[spec_1d, spec_rows])
    def noop(indices: tf.Tensor, rows: tf.Tensor) -> None:
        pass

    @tf.function(autograph=False, input_signature=[spec_rows])
    def copy_block(rows: tf.Tensor) -> None:
        small.assign(rows)

    def read(indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        # A dense read, then a gather from the tensor: a gather from the variable itself is a sparse access,
        # which would put the variable in copy-on-read mode (every dense read a whole copy) for the baselines.
        return tf.gather(variable.value(), indices).numpy()

    def one(case: str, r: int) -> float:
        if case == "tf_ours":
            seconds = timed(lambda: ours_step(index_1d[r], rows_tf[case][r]), flush)
        elif case == "tf_ours_eager":
            seconds = timed(lambda: scatter_rows(variable, plan.index_sets[r], rows_np[case][r]), flush)
        elif case == "tf_tsu_assign":
            seconds = timed(lambda: tsu_assign(index_2d[r], rows_tf[case][r]), flush)
        elif case == "tf_tsu_elem":
            out: list[Any] = []
            seconds = timed(lambda: out.append(float(tsu_elem(index_2d[r], rows_tf[case][r]))), flush)
            if out[0] != rows_np[case][r][0, 0]:
                raise CheckError(f"tf_tsu_elem, V={plan.size:,}, run {r}: the returned element is wrong")
            return seconds
        elif case == "tf_dense":
            seconds = timed(lambda: dense(masks[r], new_full), flush)
        elif case == "tf_noop":
            return timed(lambda: noop(index_1d[r], rows_tf["tf_ours"][r]), flush)
        else:  # tf_copy
            seconds = timed(lambda: copy_block(rows_tf["tf_ours"][r]), flush)
            if not np.array_equal(small.numpy(), rows_np["tf_ours"][r]):
                raise CheckError(f"tf_copy, V={plan.size:,}: the k x d variable differs from its source")
            return seconds
        check(case, plan, r, read)
        return seconds

    return run_interleaved(names, warmup, repeat, one)


# -- report -----------------------------------------------------------------------------------------
def summarise(args: argparse.Namespace, results: dict[int, dict[str, list[float]]],
              peaks: dict[int, dict[str, float]], load: tuple[str, str]) -> str:
    """The printed report: a table of medians, ratios and bandwidths, then the goals."""
    k, d = args.rows, args.dim
    lines = [
        f"one update of k = {k:,} rows, d = {d}, float32 ({k * d * 4 / 1e6:.1f} MB of rows); "
        f"median of {args.repeat} run(s) after {args.warmup} warm-up(s), caches flushed before each run",
        f"{versions()}; {os.cpu_count()} CPUs",
        "ratio = median / median of ours in the same family (numpy or tf.Variable); "
        "GB/s = k*d*4 bytes / median (V*d*4 for the V x d copy)",
        "",
        f"{'V':>10} {'case':<40} {'median ms':>10} {'min-max ms':>17} {'ratio':>9} {'GB/s':>8}",
    ]

    def median(size: int, name: str) -> float | None:
        seconds = results[size].get(name)
        return statistics.median(seconds) if seconds else None

    for size in sorted(results):
        for case in CASES:
            seconds, ours = results[size].get(case.name), median(size, case.ratio_to)
            if not seconds:
                lines.append(f"{size:>10,} {case.label:<40} {'skipped (memory)':>10}")
                continue
            ms = statistics.median(seconds) * 1e3
            spread = f"{min(seconds) * 1e3:.3f}-{max(seconds) * 1e3:.3f}"
            ratio = f"{ms / 1e3 / ours:8.2f}x" if ours else ""
            nbytes = size * d * 4 if case.full_table_bytes else k * d * 4
            lines.append(f"{size:>10,} {case.label:<40} {ms:>10.3f} {spread:>17} {ratio:>9} "
                         f"{nbytes / (ms / 1e3) / GB:>8.3f}")
        lines.append("")

    small, large = min(results), max(results)
    lines.append(f"goals (V = {small:,} smallest, V = {large:,} largest measured):")
    for name, what in (("np_ours", "numpy"), ("tf_ours", "tf.Variable, tf.function")):
        at_large, at_small = median(large, name), median(small, name)
        if at_large is None or at_small is None:
            lines.append(f"  ours flat in V ({what}): not measured")
            continue
        flat = at_large / at_small
        verdict = "met" if flat <= FLAT_GOAL else "NOT met"
        lines.append(f"  ours flat in V ({what}): {at_large * 1e3:.3f} ms at {large:,} / "
                     f"{at_small * 1e3:.3f} ms at {small:,} = {flat:.2f}x, goal <= {FLAT_GOAL}x: {verdict}")
    ours_large = median(large, "tf_ours")
    for name, what in (("tf_tsu_assign", "tensor_scatter_nd_update + assign"),
                       ("tf_tsu_elem", "tensor_scatter_nd_update, 1 element")):
        theirs = median(large, name)
        if theirs is None or ours_large is None:
            lines.append(f"  ours (tf.function) vs {what} at {large:,}: not measured")
            continue
        speedup = theirs / ours_large
        verdict = "met" if speedup >= SPEEDUP_GOAL else "NOT met"
        lines.append(f"  ours (tf.function) vs {what} at {large:,}: {theirs * 1e3:.1f} ms / "
                     f"{ours_large * 1e3:.3f} ms = {speedup:,.0f}x, goal >= {SPEEDUP_GOAL:.0f}x: {verdict}")
    lines.append("")
    lines.append(f"bandwidth at {large:,} (GB/s of the k rows written; a copy of the same bytes for comparison):")
    for name in ("np_ours", "np_copy", "np_slice", "tf_ours", "tf_ours_eager", "tf_copy", "np_full"):
        case = next(c for c in CASES if c.name == name)
        seconds = median(large, name)
        nbytes = large * d * 4 if case.full_table_bytes else k * d * 4
        figure = f"{nbytes / seconds / GB:8.3f}" if seconds else "  not measured"
        lines.append(f"  {case.label:<40} {figure}{'  (whole table)' if case.full_table_bytes else ''}")
    lines.append("")
    lines.append("peak RSS of each child process (VmHWM, MiB; TensorFlow's import is about 700 of the tf ones):")
    for size, by_group in sorted(peaks.items()):
        lines.append(f"  V = {size:>10,} ({size * d * 4 / GB:5.2f} GB table): "
                     + ", ".join(f"{group} {peak:,.0f}" for group, peak in by_group.items()))
    lines.append(f"load average (1, 5, 15 min): {load[0]} at the start, {load[1]} at the end")
    return "\n".join(lines)


def available_bytes() -> float:
    """``MemAvailable`` from /proc/meminfo (Linux); infinite where unavailable."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024.0
    except OSError:
        pass
    return float("inf")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as a string."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 3_000_000],
                        help="table sizes V (rows)")
    parser.add_argument("--rows", type=int, default=1000, help="rows written per update (k)")
    parser.add_argument("--dim", type=int, default=300, help="table dimension (d)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case; the median is reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per case before the timed ones")
    parser.add_argument("--seed", type=int, default=20261125, help="seed of the tables and index sets")
    parser.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-group", choices=tuple(GROUPS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows <= 0 or args.dim <= 0 or args.repeat <= 0 or args.warmup < 0:
        parser.error("--rows, --dim and --repeat must be positive, --warmup at least 0")
    if min(args.sizes) < args.rows + CHECK_SAMPLE:
        parser.error(f"every --sizes value must be at least --rows + {CHECK_SAMPLE}, got {min(args.sizes)}")
    return args


def measure_group(args: argparse.Namespace, size: int, group: str) -> dict[str, Any]:
    """Child: one group of cases at one table size; seconds per case and this process's peak RSS."""
    seed = args.seed + size
    plan = make_plan(size, args.dim, args.rows, args.warmup + args.repeat, seed)
    run = numpy_group if group == "numpy" else tf_group
    seconds = run(plan, list(GROUPS[group]), args.warmup, args.repeat, Flusher(FLUSH_MIB))
    return {"seconds": seconds, "peak_mib": vm_hwm_mib()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child_size is not None:
        print(json.dumps(measure_group(args, args.child_size, args.child_group)))
        return
    start_load = load_average()
    results: dict[int, dict[str, list[float]]] = {}
    peaks: dict[int, dict[str, float]] = {}
    for size in sorted(set(args.sizes)):
        results[size], peaks[size] = {}, {}
        for group in GROUPS:
            need = BASE_BYTES + PEAK_TABLES[group] * size * args.dim * 4
            available = available_bytes()
            if need > MEMORY_SHARE * available:
                print(f"  V = {size:>10,} {group:<6} skipped: needs about {need / GB:.1f} GB, "
                      f"{available / GB:.1f} GB available", flush=True)
                continue
            started = time.perf_counter()
            command = [sys.executable, str(Path(__file__).resolve()), "--child-size", str(size),
                       "--child-group", group, "--rows", str(args.rows), "--dim", str(args.dim),
                       "--repeat", str(args.repeat), "--warmup", str(args.warmup), "--seed", str(args.seed)]
            child = run_json(command, f"{group} at V={size}")
            results[size].update(child["seconds"])
            peaks[size][group] = child["peak_mib"]
            print(f"  V = {size:>10,} {group:<6} done in {time.perf_counter() - started:6.1f} s, all checks passed; "
                  f"peak RSS {child['peak_mib']:,.0f} MiB", flush=True)
    print()
    print(summarise(args, results, peaks, (start_load, load_average())))


if __name__ == "__main__":
    main()
