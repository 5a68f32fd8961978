"""The engine: executes a plan on an assembled run.

- :mod:`~harness.engine.loop`: :class:`Run` and :func:`fit`, the training loop (reads top to bottom);
- :mod:`~harness.engine.optim`: per-group optimizers and their rates;
- :mod:`~harness.engine.finite`: the NaN/Inf check of each step, judged on the device, read every N steps;
- :mod:`~harness.engine.prefix`: a frozen input-side prefix run once per phase and cached;
- :mod:`~harness.engine.checkpoint`: checkpoints as plain dicts, loaded as data only;
- :mod:`~harness.engine.hooks`: the hook interface; :mod:`~harness.engine.progress` and
  :mod:`~harness.engine.logger` (wandb) are hooks.
"""
