"""freezelab: a research harness for transfer-learning experiments about freezing."""

__version__ = "0.1.0"
