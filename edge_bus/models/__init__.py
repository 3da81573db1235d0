"""Model registry: create(name, ...) builds any model of the roster (needs torch)."""
