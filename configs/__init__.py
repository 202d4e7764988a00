"""Hydra config groups (YAML files); a package so that ``pkg://configs`` finds them when installed."""
