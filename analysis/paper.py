"""The paper's numbers: Yosinski, Clune, Bengio and Lipson (2014), top-1 % on ImageNet half B.

The reference table lives in ``shared/reference/yosinski2014.csv`` next to the repository; a copy is kept here
so an installed package (or a CI machine without that folder) still has it. A test checks the two agree.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd

LAYERS = 8  # the paper's network: 8 weight layers, n = 1..7
CITATION = (
    "Yosinski, Clune, Bengio, Lipson (2014), How transferable are features in deep neural networks? NeurIPS"
)

# Verbatim copy of yosinski2014.csv (its first line is a comment).
_CSV = """\
# Top-1 accuracy (%) on the B half of ImageNet, Yosinski et al. 2014 (NeurIPS), recomputed from the authors' released training logs; baseB = 62.5 (sd 0.55 over 8 networks)
treatment,n,top1
baseB,0,62.5
BnB,1,62.7
BnB,2,62.4
BnB,3,62.1
BnB,4,60.5
BnB,5,59.4
BnB,6,61.9
BnB,7,62.3
AnB,1,62.8
AnB,2,62.4
AnB,3,61.9
AnB,4,60.0
AnB,5,57.8
AnB,6,58.1
AnB,7,54.3
BnB+,1,61.8
BnB+,2,62.2
BnB+,3,63.1
BnB+,4,62.9
BnB+,5,63.0
BnB+,6,62.8
BnB+,7,62.7
AnB+,1,63.7
AnB+,2,63.6
AnB+,3,64.3
AnB+,4,64.0
AnB+,5,64.5
AnB+,6,64.6
AnB+,7,64.7
"""


def reference_path() -> Path | None:
    """The shared reference file, if this checkout has one (``$FREEZELAB_REFERENCE`` overrides)."""
    env = os.environ.get("FREEZELAB_REFERENCE")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[1]
    candidates += [
        repo / "shared" / "reference" / "yosinski2014.csv",
        repo.parent / "shared" / "reference" / "yosinski2014.csv",
    ]
    return next((p for p in candidates if p.is_file()), None)


def load_reference(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's table: columns ``treatment``, ``n``, ``top1`` (%); ``baseB`` is the row with n = 0."""
    path = Path(path) if path else reference_path()
    source = path.read_text() if path else _CSV
    table = pd.read_csv(io.StringIO(source), comment="#")
    table.attrs["source"] = str(path) if path else "analysis/paper.py (copy of yosinski2014.csv)"
    return table
