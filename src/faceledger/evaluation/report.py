"""A self-contained HTML report: tables and matplotlib plots inlined as PNG (no face images, ever)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np


class MissingDependency(RuntimeError):
    """A package the report needs is not installed (the message says how to install it)."""


def require_plotting() -> None:
    """MissingDependency unless matplotlib (the optional extra ``faceledger[eval]``) can be imported: the
    report's plots need it, so ``eval verify`` and ``eval identify`` check it before minutes of embedding."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "faceledger eval draws its report's plots with matplotlib, which is not installed: "
            "pip install 'faceledger[eval]' (or pip install matplotlib), then run it again") from None


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isinf(x):
            return "inf"
        if x != 0 and abs(x) < 1e-3:
            return f"{x:.2e}"
        return f"{x:.{digits}f}"
    return html.escape(str(x))


def _rate(r: dict | None) -> str:
    if not r:
        return "-"
    lo, hi = r["ci95"]
    return f"{_fmt(r['rate'])} ({r['k']}/{r['n']}; 95% CI {_fmt(lo)}-{_fmt(hi)})"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, str) else _fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#f3f3f3}h1,h2{font-weight:600}.note{color:#555;font-size:90%}")


def write_html(path: Path, report: dict, curves: dict, *, kind: str, gen=None, imp=None) -> None:
    plt = _plt()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>faceledger eval {kind}</title>"
             f"<style>{_CSS}</style></head><body><h1>faceledger eval {kind}</h1>"]
    parts.append("<p class='note'>" + html.escape(
        f"dataset {report['dataset']}; model {report['model_version']}; detector {report['detector']}; "
        f"{report['failures_to_enrol']} failures to enrol; calibration: {report['calibration']['source']}")
        + "</p>")
    cal = report["calibration"]["levels"]
    parts.append("<h2>Similarity thresholds (calibration)</h2>" + _table(
        ["Similarity", "distance <=", "nominal FMR"], [[s, v["distance"], v["nominal_fmr"]] for s, v in cal.items()]))
    if kind == "verify":
        parts += _verify(plt, report, curves, gen, imp)
    else:
        parts += _identify(plt, report, curves)
    parts.append("</body></html>")
    Path(path).write_text("\n".join(parts))


def _verify(plt, r: dict, curves: dict, gen, imp) -> list[str]:
    p = r["pairs"]
    fte = p["failure_to_enrol"]
    out = ["<h2>Verification</h2>", _table(
        ["pairs listed", "with a failure to enrol (matched / mismatched), decided 'different'",
         "10-fold accuracy, all pairs", "enrolled pairs only", "failures to enrol as errors"],
        [[p["total"], f"{fte['matched']} / {fte['mismatched']}",
          f"{r['accuracy']:.4f} &plusmn; {r['accuracy_std']:.4f}",
          f"{r['accuracy_enrolled_only']:.4f} &plusmn; {r['accuracy_enrolled_only_std']:.4f}",
          f"{r['accuracy_fte_as_error']:.4f} &plusmn; {r['accuracy_fte_as_error_std']:.4f}"]]),
        "<p class='note'>The headline accuracy decides every listed pair, as the standard protocol does: a pair "
        "with an image that gave no face is decided 'different'. EER, TAR and the curves below are over the "
        "enrolled pairs.</p>", _table(
        ["enrolled pairs (matched / mismatched)", "extra impostor pairs", "impostors used", "EER",
         "EER threshold (Similarity)"],
        [[f"{p['matched']} / {p['mismatched']}", p["extra_impostors"], p["impostors_used"], r["eer"],
          r["eer_threshold"]["similarity"]]])]
    out.append("<h3>TAR at FAR</h3>" + _table(
        ["FAR target", "measurable", "distance <=", "Similarity", "TAR", "FAR observed"],
        [[k, str(v["measurable"]), v["threshold"], v["similarity"], _rate(v["tar"]), _rate(v["far"])]
         for k, v in r["tar_at_far_detail"].items()]))
    out.append("<h3>At the Similarity thresholds</h3>" + _table(
        ["Similarity", "distance <=", "nominal FMR", "FMR (observed)", "FNMR"],
        [[s, v["distance"], v["nominal_fmr"], _rate(v["fmr"]), _rate(v["fnmr"])] for s, v in r["at_similarity"].items()]))
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, c in curves.items():
        with np.errstate(divide="ignore"):
            ax[0].semilogx(np.maximum(c["fmr"], 1e-9), c["tar"], label=name)
            ax[1].loglog(np.maximum(c["fmr"], 1e-9), np.maximum(c["fnmr"], 1e-5), label=name)
    ax[0].set(xlabel="FAR (FMR)", ylabel="TAR", title="ROC", xlim=(1e-7, 1))
    ax[1].set(xlabel="FMR", ylabel="FNMR", title="DET", xlim=(1e-7, 1))
    for a in ax[:2]:
        a.grid(True, which="both", alpha=.3)
        a.legend(fontsize=8)
    if gen is not None and imp is not None:
        bins = np.linspace(0, 1.2, 121)
        ax[2].hist(imp, bins=bins, density=True, alpha=.5, label=f"impostor ({len(imp)})")
        ax[2].hist(gen, bins=bins, density=True, alpha=.5, label=f"genuine ({len(gen)})")
        for s, v in r["at_similarity"].items():
            ax[2].axvline(v["distance"], ls=":", c="k", lw=.8)
        ax[2].set(xlabel="distance (dotted: Similarity 80, 90, 95, 99)", title="score distributions")
        ax[2].legend(fontsize=8)
    out.append(_png(fig))
    if "groups" in r:
        g = r["groups"]
        out.append(f"<h2>By group</h2><p class='note'>groups from {html.escape(g['file'])}; FMR over impostor pairs "
                   "within the same group, FNMR over the group's genuine pairs (all pairs of the dataset's "
                   f"images); {g['unlabelled_images']} images unlabelled. Small groups have wide intervals: read "
                   "the counts.</p>")
        for s in next(iter(g["groups"].values()))["at"] if g["groups"] else []:
            rows = [[name, row["identities"], row["images"], _rate(row["at"][s]["fmr"]), _rate(row["at"][s]["fnmr"])]
                    for name, row in g["groups"].items()]
            d = g["differential"][s]
            rows.append(["differential (max/min)", "", "", _diff(d["fmr"]), _diff(d["fnmr"])])
            out.append(f"<h3>Similarity {s}</h3>" + _table(["group", "identities", "images", "FMR", "FNMR"], rows))
    return out


def _diff(d: dict) -> str:
    if d["ratio"] is None:
        return "-"
    return f"{_fmt(d['ratio'], 2)} ({html.escape(str(d['max_group']))} / {html.escape(str(d['min_group']))})"


def _identify(plt, r: dict, curves: dict) -> list[str]:
    out = [f"<h2>Identification (1:N)</h2><p>gallery of {r['gallery_size']} identities (one image each); "
           f"{r['mated_searches']} mated searches, {r['nonmated_searches']} non-mated searches (identities absent "
           "from the gallery). FNIR: mate not returned; FPIR: a non-mated search returns any candidate.</p>"]
    rows = []
    for name, v in r["at"].items():
        rows.append([name, v["similarity"], v["nominal_fmr"], _rate(v["fnir"]), _rate(v["fnir_rank1"]), _rate(v["fpir"]),
                     v["expected_fpir"], v["expected_false_matches"], v["observed_false_matches"]])
    out.append(_table(["threshold", "Similarity", "nominal FMR", "FNIR", "FNIR (rank 1)", "FPIR", "expected FPIR",
                       "false matches expected", "observed"], rows))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, c in curves.items():
        ax.loglog(np.maximum(c["fpir"], 1e-4), np.maximum(c["fnir"], 1e-4), label=name)
    ax.set(xlabel="FPIR", ylabel="FNIR", title=f"identification DET, gallery {r['gallery_size']}")
    ax.grid(True, which="both", alpha=.3)
    ax.legend(fontsize=8)
    out.append(_png(fig))
    if "groups" in r:
        g = r["groups"]
        out.append(f"<h2>By group</h2><p class='note'>groups from {html.escape(g['file'])} (identity level). "
                   "Small groups have wide intervals.</p>")
        for s in r["at"]:
            rows = [[name, row["mated_searches"], row["nonmated_searches"], _rate(row["at"][s]["fnir"]),
                     _rate(row["at"][s]["fpir"])] for name, row in g["groups"].items()]
            d = g["differential"][s]
            rows.append(["differential (max/min)", "", "", _diff(d["fnir"]), _diff(d["fpir"])])
            out.append(f"<h3>{html.escape(s)}</h3>" + _table(["group", "mated", "non-mated", "FNIR", "FPIR"], rows))
    return out
