"""Is model A better than model B on this split? Two `edge-bus evaluate` reports, paired by image.

Reads only the reports' JSON (no torch, no model files): their per-image results, which must come
from the same split of the same manifest. The difference of the headline figures gets a paired
bootstrap interval (`edge_bus.intervals.paired`), and the share of resamples in which A is ahead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_bus import intervals
from edge_bus.errors import ConfigError
from edge_bus.fileio import read_json


def read_report(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    report = read_json(p, ConfigError, what="report", fix="give a report.json written by `edge-bus evaluate`, or its folder",
                       missing="give an `edge-bus evaluate` report.json or its folder")
    if not isinstance(report, dict) or report.get("task") not in ("classification", "segmentation"):
        raise ConfigError(f"{p}: not an `edge-bus evaluate` report (no task)")
    missing = [k for k in ("model", "split", "split_hash") if not isinstance(report.get(k), str)]
    if missing:
        raise ConfigError(f"{p}: not an `edge-bus evaluate` report (no {', '.join(missing)})")
    report["_path"] = str(p)
    return report


def _per_image(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = report.get(report["task"], {}).get("per_image")
    if not isinstance(rows, list) or not rows:
        raise ConfigError(
            f"{report['_path']}: the report has no per-image results (written by an older edge-bus for a "
            "classifier); run `edge-bus evaluate` on its model again"
        )
    return rows


def _aligned(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[dict], list[dict], list[str]]:
    """Both reports' per-image rows in one image order, and warnings."""
    if a["task"] != b["task"]:
        raise ConfigError(f"{a['_path']} is a {a['task']} report and {b['_path']} a {b['task']} report")
    if a.get("split_hash") != b.get("split_hash") or a.get("split") != b.get("split"):
        raise ConfigError(
            f"the reports measured different images: {a['_path']} the {a.get('split')} split of "
            f"{str(a.get('split_hash'))[:12]}, {b['_path']} the {b.get('split')} split of {str(b.get('split_hash'))[:12]}"
        )
    rows_a, rows_b = _per_image(a), _per_image(b)
    by_id_b = {r["id"]: r for r in rows_b}
    ids = [r["id"] for r in rows_a]
    if len(set(ids)) != len(ids) or len(rows_b) != len(rows_a) or set(ids) != set(by_id_b):
        raise ConfigError(f"{a['_path']} and {b['_path']} do not list the same images")
    warnings = []
    if a.get("pack_sha256") and b.get("pack_sha256") and a["pack_sha256"] != b["pack_sha256"]:
        warnings.append(
            f"the reports measured other pixels of the same images (pack {a['pack_sha256'][:12]} against "
            f"{b['pack_sha256'][:12]}: another resolution or library version)"
        )
    return rows_a, [by_id_b[i] for i in ids], warnings


def _lesion_flags(rows_a: list[dict], rows_b: list[dict]) -> np.ndarray | None:
    """Which images have a lesion, from whichever report says (reports before 2026-12-02 do not);
    ConfigError when both say and disagree."""
    flags = [np.array([r["lesion"] for r in rows], dtype=bool) for rows in (rows_a, rows_b) if all("lesion" in r for r in rows)]
    if len(flags) == 2 and not np.array_equal(*flags):
        raise ConfigError("the reports disagree on which images have a lesion")
    return flags[0] if flags else None


def compare(path_a: str | Path, path_b: str | Path, **settings: Any) -> dict[str, Any]:
    """Paired differences (A minus B) of the reports' headline figures."""
    a, b = read_report(path_a), read_report(path_b)
    rows_a, rows_b, warnings = _aligned(a, b)
    n = len(rows_a)
    figures: dict[str, dict[str, Any]] = {}
    if a["task"] == "classification":
        classes = a["classification"]["classes"]
        if b["classification"]["classes"] != classes:
            raise ConfigError(f"the reports have other classes: {classes} against {b['classification']['classes']}")
        index = {c: i for i, c in enumerate(classes)}
        truth = [index[r["truth"]] for r in rows_a]
        if truth != [index[r["truth"]] for r in rows_b]:
            raise ConfigError("the reports disagree on the true class of some images")
        pred_a, pred_b = [index[r["predicted"]] for r in rows_a], [index[r["predicted"]] for r in rows_b]
        figures["weighted F1"] = intervals.paired(intervals.weighted_f1_of(truth, pred_a, len(classes)),
                                                  intervals.weighted_f1_of(truth, pred_b, len(classes)), n, **settings)
        figures["accuracy"] = intervals.paired(intervals.accuracy_of(truth, pred_a), intervals.accuracy_of(truth, pred_b),
                                               n, **settings)
        both_wrong = sum(x != t and y != t for t, x, y in zip(truth, pred_a, pred_b))
        disagreements = {"only A right": sum(x == t != y for t, x, y in zip(truth, pred_a, pred_b)),
                         "only B right": sum(y == t != x for t, x, y in zip(truth, pred_a, pred_b)), "both wrong": both_wrong}
    else:
        lesion = _lesion_flags(rows_a, rows_b)
        if lesion is None:
            warnings.append("neither report says which images have a lesion (written before 2026-12-02): "
                            "lesion-only figures left out")
        values = {(side, metric): np.array([r[metric] for r in rows], dtype=np.float64)
                  for side, rows in (("a", rows_a), ("b", rows_b)) for metric in ("iou", "dice")}
        for metric, label in (("iou", "IoU"), ("dice", "Dice")):
            va, vb = values["a", metric], values["b", metric]
            figures[f"mean {label}, all images"] = intervals.paired(intervals.mean_of(va), intervals.mean_of(vb), n, **settings)
            if lesion is not None and lesion.any():
                figures[f"mean {label}, lesion only"] = intervals.paired(
                    intervals.mean_of(va[lesion]), intervals.mean_of(vb[lesion]), int(lesion.sum()), **settings)
        gain = values["a", "iou"] - values["b", "iou"]
        disagreements = {"A better by 0.1 IoU or more": int((gain >= 0.1).sum()),
                         "B better by 0.1 IoU or more": int((-gain >= 0.1).sum())}
    return {
        "a": {"report": a["_path"], "model": a["model"], "weights_sha256": a.get("weights_sha256")},
        "b": {"report": b["_path"], "model": b["model"], "weights_sha256": b.get("weights_sha256")},
        "task": a["task"], "split": a["split"], "split_hash": a["split_hash"], "n": n,
        "figures": figures, "images": disagreements, "warnings": warnings,
        **intervals.settings(**settings),
    }


def verdict(result: dict[str, Any]) -> str:
    """One phrase: whether the interval of the difference excludes zero."""
    low, high = result["interval"]
    if low > 0:
        return "A ahead"
    if high < 0:
        return "B ahead"
    return "no clear difference"


def markdown(comparison: dict[str, Any]) -> str:
    a, b = comparison["a"], comparison["b"]
    lines = [f"# {a['model']} (A) against {b['model']} (B) on the {comparison['split']} split", "",
             f"- A: `{a['report']}`" + (f", weights `{a['weights_sha256'][:12]}`" if a.get("weights_sha256") else ""),
             f"- B: `{b['report']}`" + (f", weights `{b['weights_sha256'][:12]}`" if b.get("weights_sha256") else ""),
             f"- {comparison['n']} images, paired; split `{comparison['split_hash'][:12]}`", ""]
    lines += [f"**Warning:** {w}" for w in comparison["warnings"]] + ([""] if comparison["warnings"] else [])
    lines += [f"| figure | A − B | {comparison['level']:.0%} interval | resamples with A ahead | verdict |", "|---|---|---|---|---|"]
    for name, r in comparison["figures"].items():
        lo, hi = r["interval"]
        lines.append(f"| {name} | {r['difference']:+.4f} | [{lo:+.4f}, {hi:+.4f}] | {r['a_ahead']:.1%} | {verdict(r)} |")
    lines += ["", "Images: " + ", ".join(f"{k}: {v}" for k, v in comparison["images"].items()), "",
              f"{comparison['method'].capitalize()}, the same resampled images for both models ({comparison['resamples']} "
              f"resamples, seed {comparison['seed']}; a tie counts half to \"A ahead\"). The interval covers the choice of "
              "test images, not another training run of either model: two seeds of one recipe can differ clearly by it. "
              "Each row is its own 95 % interval; with several rows, one may exclude 0 by chance."]
    return "\n".join(lines) + "\n"
