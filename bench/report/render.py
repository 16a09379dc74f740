"""Markdown (pipe tables) and LaTeX (booktabs) rendering with the best value per column in bold."""
from __future__ import annotations

import re

from tabulate import tabulate

from .tables import Stat, Table, is_finite

DASH = "-"


def best_rows(table: Table) -> dict[int, set[int]]:
    """Column -> rows holding its best mean (ties all bold)."""
    out: dict[int, set[int]] = {}
    for col, how in table.best.items():
        vals = [(i, r[col].mean) for i, r in enumerate(table.rows) if col < len(r) and is_finite(r[col])]
        if len(vals) < 2:
            continue
        target = max(v for _, v in vals) if how == "max" else min(v for _, v in vals)
        out[col] = {i for i, v in vals if v == target}
    return out


def _cell(value, bold: bool, fmt: str) -> str:
    if value is None:
        return DASH
    text = value.text() if isinstance(value, Stat) else str(value)
    if fmt == "latex":
        text = latex_escape(text)
        return rf"\textbf{{{text}}}" if bold else text
    return f"**{text}**" if bold else text


def markdown(table: Table) -> str:
    best = best_rows(table)
    rows = [[_cell(v, c in best and i in best[c], "md") if c else str(v) for c, v in enumerate(r)]
            for i, r in enumerate(table.rows)]
    header = list(table.header)
    if table.groups:
        names = [g for g, span in table.groups for _ in range(span)]
        header = [header[0]] + [f"{g} {h}" for g, h in zip(names, header[1:])]
    out = [f"### {table.title}", "", tabulate(rows, headers=header, tablefmt="pipe", disable_numparse=True)]
    if table.footnotes:
        out.append("")
        out += [f"_Note: {note}_" for note in table.footnotes]
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


_LATEX_UNICODE = {"±": r"$\pm$", "†": r"\dag{}", "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$",
                  "—": "---", "–": "--", "★": r"$\star$", "→": r"$\to$", "≈": r"$\approx$"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters and write the few non-ASCII ones the tables use as macros."""
    text = re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIAL[m.group()], text)
    return "".join(_LATEX_UNICODE.get(ch, ch) for ch in text)


def latex_document(inputs: list[str], title: str) -> str:
    """A standalone document that inputs the given table files (pdflatex, booktabs)."""
    body = "\n".join(rf"\input{{{name}}}" + "\n\\clearpage" for name in inputs)
    return (r"\documentclass[10pt]{article}" "\n" r"\usepackage[margin=1.5cm,landscape]{geometry}" "\n"
            r"\usepackage{booktabs}" "\n"
            rf"\title{{{latex_escape(title)}}}" "\n" r"\date{}" "\n" r"\begin{document}" "\n" r"\maketitle" "\n"
            + body + "\n" + r"\end{document}" + "\n")


def latex(table: Table) -> str:
    best = best_rows(table)
    ncols = len(table.header)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}",
             r"\begin{tabular}{l" + "c" * (ncols - 1) + "}", r"\toprule"]
    if table.groups:
        cells, start, rules = [""], 2, []
        for g, span in table.groups:
            cells.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(g)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join(latex_escape(h) for h in table.header) + r" \\")
    lines.append(r"\midrule")
    for i, r in enumerate(table.rows):
        cells = [latex_escape(str(r[0]))] + [_cell(v, c in best and i in best[c], "latex")
                                             for c, v in enumerate(r) if c]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in table.footnotes:
        lines.append(rf"\par\footnotesize {latex_escape(note)}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
