"""Tables for reports: Markdown for reading, CSV for tools, LaTeX (booktabs) for papers.

Written here rather than with ``DataFrame.to_markdown``/``to_latex`` so that the report needs neither
``tabulate`` nor ``jinja2``, and so that every cell taken from a config or a record is escaped the same way.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

_MD_SPECIAL = "\\`*_[]<>|#"
_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def escape_md(text) -> str:
    """Text safe in a Markdown paragraph or table cell (no markup, no HTML, no column breaks)."""
    out = "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(text))
    return out.replace("\r", " ").replace("\n", " ")


def escape_latex(text) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text)).replace("\n", " ")


def cell(value, digits: int = 2) -> str:
    """A value as table text: floats with ``digits`` decimals, missing values empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _formatted(frame: pd.DataFrame, digits) -> pd.DataFrame:
    def fmt(col):
        d = digits.get(col, 2) if isinstance(digits, dict) else digits
        return frame[col].map(lambda v: cell(v, d))

    return pd.DataFrame({c: fmt(c) for c in frame.columns}, index=frame.index)


def markdown_table(frame: pd.DataFrame, digits: int | dict = 2) -> str:
    if frame.empty:
        return "_(no rows)_\n"
    text = _formatted(frame, digits)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    lines = [
        "| " + " | ".join(escape_md(c) for c in frame.columns) + " |",
        "|" + "|".join("---:" if num else ":---" for num in numeric) + "|",
    ]
    lines += ["| " + " | ".join(escape_md(v) for v in row) + " |" for row in text.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def latex_table(frame: pd.DataFrame, *, caption: str = "", label: str = "", digits: int | dict = 2) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    text = _formatted(frame, digits)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    spec = "".join("r" if num else "l" for num in numeric)
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(r"\caption{" + escape_latex(caption) + "}")
    if label:
        lines.append(r"\label{" + escape_latex(label) + "}")
    lines += [
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(escape_latex(c) for c in frame.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(escape_latex(v) for v in row) + r" \\" for row in text.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(
    frame: pd.DataFrame, folder: Path, name: str, *, caption: str = "", digits: int | dict = 2
) -> dict:
    """``<folder>/<name>.csv`` (full precision) and ``<name>.tex``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / f"{name}.csv", "tex": folder / f"{name}.tex"}
    frame.to_csv(paths["csv"], index=False)
    paths["tex"].write_text(latex_table(frame, caption=caption, label=f"tab:{name}", digits=digits))
    return paths
