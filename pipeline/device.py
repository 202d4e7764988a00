"""Where tables and steps live: the GPU when TensorFlow lists one (``device=auto``), else the CPU."""

from __future__ import annotations

import tensorflow as tf

from pipeline.errors import InputError


def select_device(name: str) -> str:
    """The TensorFlow device string for ``auto``, ``cpu`` or ``gpu``.

    Raises:
        InputError: ``gpu`` was asked for and TensorFlow lists none.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if name == "cpu":
        return "/CPU:0"
    if name == "gpu" and not gpus:
        raise InputError("device", "gpu asked for, but TensorFlow lists no GPU",
                         hint="install the gpu extra on a machine with a GPU, or use device=auto")
    return gpus[0].name if gpus else "/CPU:0"
