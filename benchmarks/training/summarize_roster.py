"""The roster's summary table: one row per OUT/*/test/report.json, each with how it was trained.

Usage: python3 benchmarks/training/summarize_roster.py OUT   (writes OUT/summary.md and prints it)
       python3 benchmarks/training/summarize_roster.py --spread OUT1 OUT2 ...
                (the same models trained into several OUTs, e.g. with other seeds: how far each
                figure moves between runs, beside the test-image interval of one run; printed only)

It reads only JSON (report.json records the model file's training details), so any python3 will
do, with neither torch nor edge-bus installed; a report it cannot read becomes a row saying so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def epochs(folder: Path, train: dict) -> str:
    path = folder / "history.json"
    if path.is_file():
        history = json.loads(path.read_text())
        best = max(history, key=lambda h: h["val"]["score"])
        stop = history[-1].get("stop_reason")
        return f"{len(history)} (best {best['epoch']}{', stopped: ' + stop if stop else ''})"
    if "best_epoch" in train:
        return f"best {train['best_epoch']} of {train.get('epochs', '?')}"
    return "-"


def device(train: dict) -> str:
    if train.get("network") is False:
        return "cpu (no network)"
    if "device" not in train:
        return "-"
    return str(train["device"]) + (" (amp)" if train.get("amp") else "")


def fingerprint(report: dict) -> str:
    """The weights' SHA-256 prefix; for an ensemble its members', joined by '+'."""
    if report.get("weights_sha256"):
        return report["weights_sha256"][:12]
    members = report.get("member_weights_sha256") or []
    return "+".join(h[:8] for h in members) or "-"


def headline(r: dict) -> tuple[str, float | None, list | None, float | None, list | None]:
    """(metric, value, its interval, lesion-only IoU, its interval); intervals None in older reports."""
    ci = r.get("intervals") or {}
    if "classification" in r:
        return "weighted F1", r["classification"]["weighted_f1"], ci.get("weighted_f1"), None, None
    s = r["segmentation"]
    return ("mean IoU (all images)", s["all_images"]["iou"], (ci.get("all_images") or {}).get("iou"),
            s["lesion_only"]["iou"], (ci.get("lesion_only") or {}).get("iou"))


def figure(value: float | None, bounds: list | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else "")


def row(report_path: Path) -> str:
    try:
        r, folder = json.loads(report_path.read_text()), report_path.parent.parent
        train = r.get("train", {})
        how = f"{epochs(folder, train)} | {r['resolution']} px | {device(train)} | {fingerprint(r)}"
        metric, value, ci, lesion, lesion_ci = headline(r)
        lesion_cell = "" if metric == "weighted F1" else figure(lesion, lesion_ci)
        return f"| {r['model']} | {metric} | {figure(value, ci)} | {lesion_cell} | {how} |"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"| {report_path.parent.parent.name} | unreadable report ({type(exc).__name__}: {exc}) | | | | | | |"


def main(out: Path) -> str:
    rows = ["| model | test metric | value [95% interval over test images] | lesion-only IoU | epochs | resolution | device | "
            "weights (SHA-256) |", "|---|---|---|---|---|---|---|---|"]
    rows += [row(p) for p in sorted(out.glob("*/test/report.json"))]
    failures = out / "failures.txt"
    if failures.is_file():
        rows += ["", "Failed steps:", ""] + [f"- {line}" for line in failures.read_text().splitlines()]
    text = "\n".join(rows) + "\n"
    (out / "summary.md").write_text(text)
    return text


def spread(outs: list[Path]) -> str:
    """Per model: its figure in each OUT, their mean, sample standard deviation and range, and the
    mean width of one run's interval over test images (what a single run would have claimed)."""
    runs: dict[tuple[str, str], list[tuple[float, list | None]]] = {}
    for out in outs:
        for path in sorted(out.glob("*/test/report.json")):
            r = json.loads(path.read_text())
            metric, value, ci, _, _ = headline(r)
            runs.setdefault((r["model"], metric), []).append((value, ci))
    rows = ["| model | test metric | runs | each run | mean | standard deviation | range | one run's interval width (mean) |",
            "|---|---|---|---|---|---|---|---|"]
    for (model, metric), found in runs.items():
        values = [v for v, _ in found]
        mean = sum(values) / len(values)
        sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else float("nan")
        widths = [ci[1] - ci[0] for _, ci in found if ci]
        width = f"{sum(widths) / len(widths):.3f}" if widths else "-"
        rows.append(f"| {model} | {metric} | {len(values)} | {', '.join(f'{v:.4f}' for v in values)} | {mean:.4f} | "
                    f"{sd:.4f} | {max(values) - min(values):.4f} | {width} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--spread":
        print(spread([Path(a) for a in sys.argv[2:]]), end="")
    elif len(sys.argv) == 2:
        print(main(Path(sys.argv[1])), end="")
    else:
        sys.exit("usage: summarize_roster.py OUT | summarize_roster.py --spread OUT1 OUT2 ...")
