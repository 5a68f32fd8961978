"""Training until convergence on validation accuracy, ending with the best-validation weights.

``early_stopping.patience=n`` (Lightning's ``EarlyStopping`` with Keras' ``restore_best_weights``, and with
``early_stopping.reductions=r`` Keras' ``ReduceLROnPlateau`` before it): when validation accuracy has not
improved for ``n`` epochs, the learning rate of every group is multiplied by ``early_stopping.factor``, at most
``r`` times; the next time, the run stops. It also stops at the end of its plan (the cap). Either way its final
weights are those of the epoch with the best validation accuracy (the later epoch on ties). Patience counts
from the last strict improvement (or reduction): a plateau of equal accuracies does not keep a run alive.

The state (best accuracy, its epoch, a copy of its weights, the reductions so far) goes into every
checkpoint, so a resumed run reduces and stops where the uninterrupted one would, with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class EarlyStop:
    patience: int
    reductions: int = 0  # how many times the lr may be cut on a plateau before the run stops
    factor: float = 0.1  # the cut
    lr_factor: float = 1.0  # the product of the cuts so far; the loop multiplies every group's rate by it
    reduced_at: list[int] = field(default_factory=list)  # epochs after which the lr was cut
    best_val: float = float("-inf")
    improved_epoch: int = 0  # the last epoch that strictly improved validation accuracy (or cut the lr)
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
        if epoch - self.improved_epoch < self.patience:
            return False
        if len(self.reduced_at) < self.reductions:
            self.lr_factor *= self.factor
            self.reduced_at.append(epoch)
            self.improved_epoch = epoch  # the lower rate gets a full patience of its own
            return False
        self.stopped_early = True
        return True

    def restore(self, net: torch.nn.Module) -> None:
        """Put the best-validation weights back into ``net``."""
        if self.weights is not None:
            net.load_state_dict(self.weights)

    def summary(self, epochs: int) -> dict:
        """What the record says: how the run ended and which epoch's weights it kept."""
        return {
            "patience": self.patience,
            "reductions": self.reductions,
            "reduced_at": list(self.reduced_at),
            "epochs": epochs,
            "best_epoch": self.best_epoch,
            "best_val_acc": self.best_val if self.weights is not None else None,
            "stopped": "patience" if self.stopped_early else "cap",
        }

    def state(self) -> dict:
        keys = (
            "lr_factor",
            "reduced_at",
            "best_val",
            "improved_epoch",
            "best_epoch",
            "weights",
            "stopped_early",
        )
        return {k: getattr(self, k) for k in keys}

    def load_state(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, list(value) if key == "reduced_at" else value)
