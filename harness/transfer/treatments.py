"""The transferability experiment of Yosinski, Clune, Bengio and Lipson (2014), as config rewriting.

A treatment job (``transfer.treatment=AnB transfer.n=3``) becomes an ordinary run on half B:
- its bases (``baseA``/``baseB``) are ordinary runs on half A/B with strategy ``never``, trained once and
  kept in a cache keyed by exactly the inputs that decide them (:mod:`harness.transfer.bases`);
- the treatment copies the first n groups from its base (``init.from``, ``init.groups=n``) and freezes them
  (``freeze_to(n)``) or trains them (the ``+`` treatments); the rest starts from a fresh random init.

| treatment | layers 1..n | layers n+1..L |
|---|---|---|
| BnB  | copied from baseB, frozen | re-initialised, trained |
| BnB+ | copied from baseB, trained | re-initialised, trained |
| AnB  | copied from baseA, frozen | re-initialised, trained |
| AnB+ | copied from baseA, trained | re-initialised, trained |
| random | random init, frozen | trained |
| warm | all layers from a base trained on ``warm_fraction`` of B, trained | - |
| scratch | random init on all of B at the same budget (the warm start's control) | - |

What a treatment job needs and becomes is planned in :mod:`harness.transfer.plan`.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from harness.config import checks


@dataclass(frozen=True)
class Treatment:
    name: str
    base_half: str | None  # whose weights the first n layers get: "A", "B" or None (random init)
    frozen: bool  # copied (or random) layers frozen (lr 0, no weight decay) or trained
    uses_n: bool = True


TREATMENTS = {
    t.name: t
    for t in (
        Treatment("BnB", "B", True),
        Treatment("BnB+", "B", False),
        Treatment("AnB", "A", True),
        Treatment("AnB+", "A", False),
        Treatment("random", None, True),
        Treatment("warm", "B", False, uses_n=False),
        Treatment("scratch", None, False, uses_n=False),
    )
}


def treatment_of(cfg: DictConfig) -> Treatment | None:
    section = cfg.get("transfer") or {}
    name = section.get("treatment")
    if name is None:
        return None
    return TREATMENTS[checks.one_of(name, "transfer.treatment", TREATMENTS, what="a treatment")]
