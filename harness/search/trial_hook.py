"""The job's side of a search: a hook that ties one training run to its Optuna trial.

The sweeper passes ``trial.number``, ``trial.study`` and ``trial.storage`` to each job as overrides. The
hook re-attaches to that trial through the storage (from any process or machine), reports the validation
accuracy after every epoch and, when the study's pruner says so, ends the run with
``StopRun("pruned", ...)``: the record then says ``status: pruned`` and ``stopped_epoch``.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.hooks import Hook, StopRun
from harness.search.outcome import EPOCH_METRIC


class TrialHook(Hook):
    def __init__(self, trial_cfg: Mapping):
        self.number = int(trial_cfg["number"])
        self.study_name = str(trial_cfg["study"])
        self.storage_url = str(trial_cfg["storage"])
        self.trial = None
        self.metric: str | None = (
            None  # what is reported each epoch; None: nothing (multi-objective, no pruner)
        )
        self.pruner = "none"
        self.reported = 0

    def on_run_start(self, run) -> None:
        import optuna

        from harness.search import study as studies

        storage = studies.open_storage(self.storage_url)
        study_id = storage.get_study_id_from_name(self.study_name)
        # The sweeper stores what jobs need to know in the study itself, so a job on another machine needs
        # nothing but the storage URL: the pruner's settings and the objectives.
        info = storage.get_study_user_attrs(study_id).get(studies.ATTR_KEY, {})
        self.pruner = (info.get("pruner") or {}).get("name", "none")
        study = studies.open_study(
            self.study_name, storage, [], pruner=studies.make_pruner(info.get("pruner")), create=False
        )
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.number)
        self.trial = optuna.trial.Trial(study, trial_id)
        objectives = info.get("objectives") or ["val_acc"]
        # Optuna reports intermediate values for single-objective studies only.
        if len(objectives) == 1:
            self.metric = EPOCH_METRIC.get(objectives[0])
        # A retried trial whose run resumed from a checkpoint (harness/store.py): report the epochs done before,
        # so its pruner sees the whole curve.
        if self.metric is not None:
            for entry in run.history:
                self.trial.report(entry[self.metric], step=int(entry["epoch"]))

    def on_epoch_end(self, run, entry: dict) -> None:
        if self.trial is None or self.metric is None:
            return
        import optuna

        value, epoch = entry[self.metric], int(entry["epoch"])
        try:
            self.trial.report(value, step=epoch)
        except optuna.exceptions.UpdateFinishedTrialError:
            # The study no longer waits for this trial (its worker was declared dead): stop wasting the slot.
            raise StopRun(
                "failed", f"trial {self.number} was finished in the study meanwhile (stale?)"
            ) from None
        self.reported += 1
        if self.trial.should_prune():
            raise StopRun(
                "pruned", f"pruned by the {self.pruner} pruner after epoch {epoch}: {self.metric} {value:.4f}"
            )

    def on_run_end(self, run, record: dict) -> None:
        from harness.search.study import redact

        record["trial"] = {
            "study": self.study_name,
            "number": self.number,
            "storage": redact(self.storage_url),
            "pruner": self.pruner,
            "reported_epochs": self.reported,
        }
