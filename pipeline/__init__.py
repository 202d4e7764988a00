"""The stages of domain adaptation, as plain functions over typed values (no Hydra, no MLflow)."""

__version__ = "0.1.0"
