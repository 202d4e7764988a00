"""What fine-tuning does: the objective, its inputs, the optimizer, and the loop's cadence."""

from __future__ import annotations

from dataclasses import dataclass

OBJECTIVES = ("none", "sgns", "glove")
CONTEXTS = ("frozen", "mapped", "learned")
OPTIMIZERS = ("sgd", "adagrad", "adam", "adamw", "lazy_adam")
STRATEGIES = ("default", "mirrored", "multi_worker")
MONITORS = ("probes", "heldout_loss")
JIT_COMPILE = ("auto", "true", "false")


@dataclass(frozen=True)
class TrainOptions:
    """How the trainable rows (new and shifted tokens) are fine-tuned; every other row stays frozen.

    Attributes:
        objective: ``sgns`` (skip-gram with negative sampling over the pairs whose centre is a
            trainable row), ``glove`` (Mittens: weighted least squares on the trainable rows'
            co-occurrence counts, held sparse), or ``none`` (the induced vectors are the result).
        context: ``frozen`` (context vectors are the pretrained rows, never changed), ``mapped``
            (the pretrained rows through a la carte's map, so that a row whose contexts average to
            ``m`` is pulled towards the vector induction gives it, ``m @ map``, rather than towards
            ``m`` itself; frozen too; ``frozen`` when no map was fitted) or ``learned`` (a context
            table initialised from the rows of the corpus's tokens and trained with them). The
            exported table holds only the word vectors.
        optimizer: ``sgd``, ``adagrad``, ``adam`` or ``adamw`` (Keras optimizers over the trainable
            rows only: their slots are trainable-rows x dim, never table-sized), or ``lazy_adam``
            (Adam updating only the rows of each step, :class:`~pipeline.train.lazy_adam.LazyAdam`:
            Keras' Adam updates all trainable rows every step, which dominates a step once there
            are tens of thousands of them).
        lr: the starting learning rate; it decays linearly to ``min_lr`` over the planned steps (the
            expected number of steps, :meth:`~pipeline.train.data.WindowStream.planned_steps`). The
            loss is a mean over the step's windows, so ``sgd`` wants a rate near 1, not word2vec's 0.025.
        min_lr: the learning rate at the last planned step.
        weight_decay: ``adamw``'s decoupled weight decay (trainable rows only).
        batch_size: windows per step, each a centre with its contexts: up to ``2 * window`` pairs
            (``glove``: co-occurrence cells per step).
        epochs: passes over the training pairs.
        window: context tokens on each side of a centre (word2vec's dynamic window: each centre
            draws its own width in ``1..window``).
        negatives: negative contexts per pair, drawn from the corpus unigram distribution ** 0.75.
        sample: word2vec's subsampling threshold (frequent tokens are dropped as centres and
            contexts with probability ``1 - (sqrt(f / sample) + 1) * sample / f``); 0: none.
        anchor_mu: a shifted row pays ``anchor_mu * ||w - w_pretrained||^2`` per occurrence (new rows
            are not anchored: they start from their induced vectors).
        heldout: share of documents held out for the held-out loss (0: no held-out loss, no early stop).
        eval_every: steps between evaluations (held-out loss, probes); 0: ``evals_per_epoch`` a epoch.
        evals_per_epoch: with ``eval_every=0``, evaluations per epoch, evenly spaced in steps: a run
            whose first steps only make the rows worse stops within an epoch.
        patience: evaluations without a better monitored value before training stops (0: never
            stops early); the rows of the best evaluation are the result.
        monitor: what an evaluation judges: ``probes`` (the induction self-test's held-out table
            tokens train alongside as if new, and their mean cosine to their true vectors is the
            score: a measure of vector quality, where the held-out loss only measures the
            objective) or ``heldout_loss``. ``probes`` needs ``induce.selftest_size > 0``; without
            probes the held-out loss is monitored.
        probes: most self-test tokens trained as probes (each adds its windows to every epoch).
        checkpoint_every: steps between checkpoints (a checkpoint is also written at the end).
        keep_checkpoints: checkpoints kept on disk.
        resume: continue from the run directory's last checkpoint when there is one.
        log_every: steps between step metrics (loss, learning rate, pairs/s).
        strategy: ``default`` (one device), ``mirrored`` (every local device) or ``multi_worker``
            (hosts listed in ``TF_CONFIG``).
        jit_compile: whether the ``sgns`` step is compiled by XLA (the name of Keras' option):
            ``auto`` (with ``adam`` or ``adamw`` and the ``default`` strategy, on a CPU too: Keras' Adam
            updates every trainable row at every step, and compiled that update is fused, so a step
            takes about half the time), ``true`` (also with ``sgd`` or ``adagrad``, whose sparse
            updates then become dense: every trainable row is written at every step) or ``false``.
            Batches are padded to ``batch_size`` so that the step compiles once. ``glove``,
            ``lazy_adam`` and the mirrored strategies are never compiled (XLA cannot place a mirrored
            variable's replicas: https://www.tensorflow.org/xla/known_issues); ``true`` refuses them.
        x_max: ``glove``: counts at or above it weigh 1.
        alpha: ``glove``: the weight is ``(count / x_max) ** alpha`` below ``x_max``.
    """

    objective: str = "sgns"
    context: str = "frozen"
    optimizer: str = "adam"
    lr: float = 0.0001
    min_lr: float = 0.0
    weight_decay: float = 0.004
    batch_size: int = 1024
    epochs: int = 5
    window: int = 5
    negatives: int = 5
    sample: float = 1e-3
    anchor_mu: float = 0.1
    heldout: float = 0.05
    eval_every: int = 0
    evals_per_epoch: int = 4
    patience: int = 1
    monitor: str = "probes"
    probes: int = 200
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = True
    log_every: int = 50
    strategy: str = "default"
    jit_compile: str = "auto"
    x_max: float = 100.0
    alpha: float = 0.75

    @property
    def compilable(self) -> bool:
        """Whether XLA can compile the training step: ``sgns``, a Keras optimizer, one device."""
        return self.objective == "sgns" and self.optimizer != "lazy_adam" and self.strategy == "default"

    @property
    def compiled(self) -> bool:
        """Whether the training step is XLA-compiled (``jit_compile``, resolved)."""
        jit = str(self.jit_compile).lower()
        return self.compilable and (jit == "true" or (jit == "auto" and self.optimizer in ("adam", "adamw")))

    def __post_init__(self) -> None:
        for name, allowed in (("objective", OBJECTIVES), ("context", CONTEXTS), ("optimizer", OPTIMIZERS),
                              ("strategy", STRATEGIES), ("monitor", MONITORS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"train.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        jit = str(self.jit_compile).lower()
        if jit not in JIT_COMPILE:
            raise ValueError(f"train.jit_compile must be one of {', '.join(JIT_COMPILE)}, got {self.jit_compile!r}")
        if jit == "true" and not self.compilable:
            raise ValueError(f"train.jit_compile=true compiles the sgns step of a Keras optimizer on one device, not "
                             f"train={self.objective} with train.optimizer={self.optimizer} and "
                             f"train.strategy={self.strategy}: set train.jit_compile=auto")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"train.min_lr must be in 0..train.lr ({self.lr}), got {self.min_lr}")
        for name in ("batch_size", "epochs", "window", "checkpoint_every", "keep_checkpoints", "log_every",
                     "evals_per_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("negatives", "eval_every", "patience", "probes"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("sample", "anchor_mu", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.heldout < 0.5:
            raise ValueError(f"train.heldout must be a share in [0, 0.5), got {self.heldout}")
        if self.objective == "sgns" and self.negatives < 1:
            raise ValueError(f"train.negatives must be at least 1 for sgns, got {self.negatives}")
        if not self.x_max > 0 or not self.alpha > 0:
            raise ValueError(f"train.x_max and train.alpha must be positive, got {self.x_max} and {self.alpha}")
