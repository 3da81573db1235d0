"""The roster's summary table: one row per OUT/*/test/report.json, each with how it was trained.

Usage: python3 benchmarks/training/summarize_roster.py OUT   (writes OUT/summary.md and prints it)

It reads only JSON (report.json records the model file's training details), so any python3 will
do, with neither torch nor edge-bus installed; a report it cannot read becomes a row saying so.
"""

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


def row(report_path: Path) -> str:
    try:
        r, folder = json.loads(report_path.read_text()), report_path.parent.parent
        train = r.get("train", {})
        how = f"{epochs(folder, train)} | {r['resolution']} px | {device(train)} | {fingerprint(r)}"
        if "classification" in r:
            return f"| {r['model']} | weighted F1 | {r['classification']['weighted_f1']:.4f} | | {how} |"
        s = r["segmentation"]
        lesion = "n/a" if s["lesion_only"]["iou"] is None else f"{s['lesion_only']['iou']:.4f}"
        return f"| {r['model']} | mean IoU (all images) | {s['all_images']['iou']:.4f} | {lesion} | {how} |"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"| {report_path.parent.parent.name} | unreadable report ({type(exc).__name__}: {exc}) | | | | | | |"


def main(out: Path) -> str:
    rows = ["| model | test metric | value | lesion-only IoU | epochs | resolution | device | weights (SHA-256) |",
            "|---|---|---|---|---|---|---|---|"]
    rows += [row(p) for p in sorted(out.glob("*/test/report.json"))]
    failures = out / "failures.txt"
    if failures.is_file():
        rows += ["", "Failed steps:", ""] + [f"- {line}" for line in failures.read_text().splitlines()]
    text = "\n".join(rows) + "\n"
    (out / "summary.md").write_text(text)
    return text


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: summarize_roster.py OUT")
    print(main(Path(sys.argv[1])), end="")
