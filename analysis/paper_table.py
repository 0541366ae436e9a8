"""`lth tickets --format markdown|latex|csv`: per configuration and metric, a method x sparsity
table of mean +- sd (n seeds), the dense reference first, the ticket's cell marked; ready to paste
into a paper. The CSV is the long form (one row per configuration, metric, method and round) with
every quantity the verdict used."""
from __future__ import annotations

import csv
import io

import pandas as pd

from lth_sweep.analysis.sweep_verdicts import SAME_SPARSITY


def _cell(step: dict, digits: int) -> str:
    if step["mean"] is None:
        return "-"
    sd = "" if step["sd"] is None else f" ± {step['sd']:.{digits}f}"
    return f"{step['mean']:.{digits}f}{sd} ({step['n']})"


def _dense_cell(rows: list[dict], digits: int) -> str:
    references = [step["reference"] for row in rows for step in row["rounds"] if step["reference"] is not None]
    return "-" if not references else f"{sum(references) / len(references):.{digits}f}"


def design_sparsities(values, within: float = SAME_SPARSITY) -> list[float]:
    """The sweep's sparsity levels: values within `within` of a level's first are one column (omp at
    93.9% and imp at 93.8% are the same design point), each shown as its mean."""
    levels: list[list[float]] = []
    for value in sorted(values):
        if levels and value - levels[-1][0] <= within:
            levels[-1].append(value)
        else:
            levels.append([value])
    return [sum(level) / len(level) for level in levels]


def _nearest(levels: list[float], value: float) -> int:
    return min(range(len(levels)), key=lambda i: abs(levels[i] - value))


def grid(rows: list[dict], digits: int = 4) -> tuple[list[str], list[list[str]], list[tuple[int, int]]]:
    """(header, body rows, marked (row, column) cells) for one configuration and metric."""
    levels = design_sparsities([step["sparsity"] for row in rows for step in row["rounds"]])
    header = ["method", *(f"{s:.1%}" for s in levels)]
    body = [["dense (reference)", *([_dense_cell(rows, digits)] * len(levels))]]
    marked = []
    for row in rows:
        cells = {_nearest(levels, step["sparsity"]): step for step in row["rounds"]}
        body.append([row["method"], *(_cell(cells[i], digits) if i in cells else "-" for i in range(len(levels)))])
        if row["ticket_sparsity"] is not None:
            marked.append((len(body) - 1, 1 + _nearest(levels, row["ticket_sparsity"])))
    return header, body, marked


def _tables(result: dict):
    for configuration in result["configurations"]:
        blocks = [(configuration["winning"]["rule"], configuration["winning"])] if configuration["winning"]["rows"] else []
        blocks += list(configuration["metrics"].items())
        for title, block in blocks:
            if block["rows"]:
                yield configuration["config"], title, block


def markdown(result: dict) -> str:
    out = []
    for config, title, block in _tables(result):
        header, body, marked = grid(block["rows"])
        for r, c in marked:
            body[r][c] = f"**{body[r][c]}**"
        out += [f"**{config}: {title}** (mean ± sd (seeds); bold: the ticket, the sparsest round reached while every round "
                f"matches dense within the margin {block['margin']['value']:.4g})", "",
                "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in body]
        out += ["", *_no_ticket(block["rows"])]
    return "\n".join(out)


def _no_ticket(rows: list[dict]) -> list[str]:
    """Why the methods without a ticket have none: a table with no bold cell says nothing by itself."""
    reasons = []
    for row in rows:
        stop = row.get("stopped")
        if row["ticket_round"] is None and stop:
            why = f"r{stop['round']} {stop['status']}" + (f": {stop['reason']}" if stop.get("reason") else "")
            reasons.append(f"{row['method']} ({why})")
    return [f"No ticket: {'; '.join(reasons)}.", ""] if reasons else []


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                          ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$")


def latex(result: dict) -> str:
    out = []
    for config, title, block in _tables(result):
        header, body, marked = grid(block["rows"])
        body = [[_latex_escape(cell) for cell in row] for row in body]
        for r, c in marked:
            body[r][c] = rf"\textbf{{{body[r][c]}}}"
        out += [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
                " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule"]
        out += [" & ".join(row) + r" \\" for row in body]
        out += [r"\bottomrule", r"\end{tabular}",
                rf"\caption{{{_latex_escape(config)}: {_latex_escape(title)}, mean $\pm$ sd (seeds) by sparsity; bold: the "
                rf"ticket (every round up to it matches dense within {block['margin']['value']:.4g}).}}",
                r"\end{table}", ""]
    return "\n".join(out)


def long_form(result: dict) -> pd.DataFrame:
    records = []
    for config, title, block in _tables(result):
        for row in block["rows"]:
            for step in row["rounds"]:
                interval = step["interval"] or [None, None]
                records.append({
                    "config": config, "metric": title, "method": row["method"], "round": step["round"],
                    "sparsity": step["sparsity"], "n": step["n"], "mean": step["mean"], "sd": step["sd"],
                    "reference": step["reference"], "diff": step["diff"], "ci90_low": interval[0], "ci90_high": interval[1],
                    "p_noninferiority": step["p_value"], "status": step["status"], "reason": step["reason"],
                    "margin": block["margin"]["value"], "ticket": row["ticket_round"] == step["round"],
                    "confident": row.get("confident_round") is not None and step["round"] <= row["confident_round"],
                })
    return pd.DataFrame(records)


def csv_text(result: dict) -> str:
    out = io.StringIO()
    long_form(result).to_csv(out, index=False, quoting=csv.QUOTE_MINIMAL)
    return out.getvalue()
