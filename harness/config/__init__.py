"""Config: composing the Hydra tree from Python (:mod:`~harness.config.compose`), the typed checks
(:mod:`~harness.config.checks`) and the schema of every key that uses them (:mod:`~harness.config.schema`),
Hydra's own errors as one line (:mod:`~harness.config.cli`), and the Hydra callbacks that check a multirun's
config and the output folders before any job starts (:mod:`~harness.config.callbacks`)."""
