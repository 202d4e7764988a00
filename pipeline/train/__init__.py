"""Fine-tuning the trainable rows (new and shifted tokens) with masked, sparse updates."""
