"""The cart runtime: sources -> pipeline -> backends -> postprocess -> sinks. Never imports torch."""
