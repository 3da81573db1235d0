"""Training loop, losses, checkpoints and evaluation reports (needs torch)."""
