"""Optuna search inside Hydra multiruns (the sweeper ``hydra_plugins/freezelab_optuna`` adapts Hydra to it).

One concept per module:
- :mod:`harness.search.worker`: the worker, ask -> launch -> tell per free slot, failures, dead workers,
  repeats, outputs; no Hydra in it (the launch is a function it is given);
- :mod:`harness.search.heartbeat`: heartbeats for the trials a worker has in flight;
- :mod:`harness.search.space`: Hydra's sweep syntax -> Optuna distributions; a trial's values -> overrides;
- :mod:`harness.search.study`: storage, study, sampler, pruner, resume bookkeeping (stale, budget, repeats);
- :mod:`harness.search.trial_hook`: the job's side: report val_acc each epoch, stop when pruned;
- :mod:`harness.search.outcome`: a job's ``result.json`` -> the trial's state and objective values;
- :mod:`harness.search.outputs`: ``trials.csv`` and ``best.yaml``.

Submodules import optuna; import them where they are used, not from here.
"""
