"""freezelab's Optuna sweeper for Hydra (select it with a conf/search preset: ``-m search=<name>``).

Lives in the ``hydra_plugins`` namespace package because Hydra instantiates sweepers only from there;
the search logic itself is in :mod:`harness.search`.
"""
