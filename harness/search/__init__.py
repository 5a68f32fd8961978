"""Optuna search inside Hydra multiruns (the sweeper is ``hydra_plugins/freezelab_optuna``).

One concept per module:
- :mod:`harness.search.space`: Hydra's sweep syntax -> Optuna distributions; a trial's values -> overrides;
- :mod:`harness.search.study`: storage, study, sampler, pruner, resume bookkeeping (stale, budget, repeats);
- :mod:`harness.search.trial_hook`: the job's side: report val_acc each epoch, stop when pruned;
- :mod:`harness.search.outcome`: a job's ``result.json`` -> the trial's state and objective values;
- :mod:`harness.search.outputs`: ``trials.csv`` and ``best.yaml``.

Submodules import optuna; import them where they are used, not from here.
"""
