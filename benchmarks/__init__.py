"""Benchmarks, outside the library: ``python -m benchmarks.bench`` (ratios side by side in one run) and
``python -m benchmarks.soak`` (a long search in one process, its memory trend)."""
