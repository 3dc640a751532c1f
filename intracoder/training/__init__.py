"""Training: the config (config.py), the loop (loop.py), checkpoints and rollback
(checkpoint.py), previews, loss plots and TensorBoard scalars (preview.py)."""
