"""Plans: what trains when, at which rate. Plain data, compiled from the config before any training.

- :mod:`~harness.plan.strategies`: one compiler per ``conf/strategy/<name>.yaml`` -> a :class:`Plan` of phases;
- :mod:`~harness.plan.lr`: fastai's discriminative rates (``slice(lo, hi)``) spread over the groups;
- :mod:`~harness.plan.schedules`: one-cycle, step and constant, as pure functions of progress;
- :mod:`~harness.plan.freezing`: applying a phase to the model (``requires_grad``, norm-layer policy);
- :mod:`~harness.plan.summary`: the per-phase table (group, modules, #params, trainable, lr).
"""
