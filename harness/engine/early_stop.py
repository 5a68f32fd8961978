"""Early stopping on validation accuracy, ending with the best-validation weights.

``early_stopping.patience=n`` (Lightning's ``EarlyStopping`` with Keras' ``restore_best_weights``): the run
stops once validation accuracy has not improved for ``n`` epochs, or at the end of its plan (the cap), and
its final weights are those of the epoch with the best validation accuracy (the later epoch on ties). The
patience counts from the last strict improvement: a plateau of equal accuracies does not keep a run alive.

The state (best accuracy, its epoch and a copy of its weights) goes into every checkpoint, so a resumed run
stops where the uninterrupted one would, with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EarlyStop:
    patience: int
    best_val: float = float("-inf")
    improved_epoch: int = 0  # the last epoch that strictly improved validation accuracy
    best_epoch: int = 0  # the epoch whose weights are kept (the latest of the best)
    weights: dict[str, torch.Tensor] | None = None
    stopped_early: bool = False

    def update(self, net: torch.nn.Module, epoch: int, val_acc: float) -> bool:
        """Record epoch ``epoch`` (1-based) and its validation accuracy; True when the run should stop."""
        if val_acc > self.best_val:
            self.improved_epoch = epoch
        if val_acc >= self.best_val:
            self.best_val, self.best_epoch = val_acc, epoch
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
        self.stopped_early = epoch - self.improved_epoch >= self.patience
        return self.stopped_early

    def restore(self, net: torch.nn.Module) -> None:
        """Put the best-validation weights back into ``net``."""
        if self.weights is not None:
            net.load_state_dict(self.weights)

    def summary(self, epochs: int) -> dict:
        """What the record says: how the run ended and which epoch's weights it kept."""
        return {
            "patience": self.patience,
            "epochs": epochs,
            "best_epoch": self.best_epoch,
            "best_val_acc": self.best_val if self.weights is not None else None,
            "stopped": "patience" if self.stopped_early else "cap",
        }

    def state(self) -> dict:
        return {
            "best_val": self.best_val,
            "improved_epoch": self.improved_epoch,
            "best_epoch": self.best_epoch,
            "weights": self.weights,
            "stopped_early": self.stopped_early,
        }

    def load_state(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
