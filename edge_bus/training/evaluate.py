"""Evaluation reports: any roster model (checkpoint .pt, classical .json, ensemble .json) on one
split of a pack -> report.json, report.md and figures (confusion matrix for classifiers, a grid
of the best and worst overlays for segmenters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_bus.data.pack import load_pack
from edge_bus.errors import CheckpointError, ConfigError
from edge_bus.fileio import read_json, write_json_atomic, write_text_atomic
from edge_bus.training.data import SplitArrays, split_arrays

# How the model was trained, copied from its file into report.json's "train" (the keys it has), so
# a summary of many reports reads only JSON and needs neither torch nor edge-bus.
TRAIN_KEYS = ("device", "amp", "epochs", "epochs_run", "best_epoch", "resolution", "world_size", "weights", "network",
              "threads", "cpu", "cpu_capability", "gpu", "pack_sha256", "init_source", "encoder_source")


@dataclass
class LoadedModel:
    """What evaluation needs of any roster model."""

    name: str
    task: str
    classes: list[str]
    spec: Any  # PreprocessSpec
    threshold: float
    split_hash: str
    predict: Callable[[np.ndarray], np.ndarray]  # uint8 (N,S,S) -> logits (N,C) or probabilities (N,S,S)
    source: Path
    train: dict[str, Any] = field(default_factory=dict)  # the model file's record of its training
    # What identifies the evaluated model, copied into the report: {"weights_sha256": ...,
    # "training_versions": {...}} for a checkpoint, {"member_weights_sha256": [...]} for an
    # ensemble, {} for the classical baseline (its parameters are its file).
    fingerprints: dict[str, Any] = field(default_factory=dict)


def load_any(path: str | Path, device: str = "cpu", batch_size: int = 16) -> LoadedModel:
    """Open a checkpoint (.pt), a classical-baseline or an ensemble file (.json), by content."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such model file (a .pt checkpoint, classical.json or ensemble.json)")
    if p.suffix == ".json":
        data = read_json(p, CheckpointError, what="model file", fix="give a .pt checkpoint, classical.json or ensemble.json")
        kind = data.get("format") if isinstance(data, dict) else None
        if kind == "edge-bus-classical":
            from edge_bus.models.classical import load_classical

            m = load_classical(p, data)
            return LoadedModel("classical", "segmentation", m.classes, m.preprocessing, 0.5, m.split_hash,
                               lambda images: m.segmenter.predict_batch(images).astype(np.float32), p,
                               {"device": "cpu", "network": False, **m.train})
        if kind == "edge-bus-ensemble":
            from edge_bus.models.ensemble import load_ensemble

            e = load_ensemble(p, data)
            loaded = _torch_model(f"ensemble ({e.mode})", "segmentation", e.classes, e.preprocessing, e.threshold,
                                  e.split_hash, e.build_model(), p, device, batch_size)
            loaded.fingerprints["member_weights_sha256"] = list(e.member_weights_sha256)  # as build_model loaded them
            return loaded
        raise CheckpointError(f"{p}: unknown model file format {kind!r}; expected edge-bus-classical or edge-bus-ensemble")
    from edge_bus.training.checkpoint import load_checkpoint

    c = load_checkpoint(p)
    loaded = _torch_model(c.model, c.task, c.classes, c.preprocessing, c.threshold, c.split_hash, c.build_model(), p, device,
                          batch_size, c.train)
    loaded.fingerprints["weights_sha256"] = c.weights_sha256  # checked against the file's own record on load
    loaded.fingerprints["training_versions"] = dict(c.versions)
    return loaded


def _torch_model(name, task, classes, spec, threshold, split_hash, model, path, device, batch_size, train=None) -> LoadedModel:
    import torch

    from edge_bus.training.distributed import resolve_device
    from edge_bus.training.predict import predict_arrays

    dev = resolve_device(device)
    model = model.to(dev)
    return LoadedModel(name, task, classes, spec, threshold, split_hash,
                       lambda images: predict_arrays(model, images, spec, dev, batch_size), path, dict(train or {}))


def evaluate(
    model_path: str | Path, pack_path: str | Path, out: str | Path, *, split: str = "test", device: str = "cpu",
    batch_size: int = 16, n_overlays: int = 4,
) -> dict[str, Any]:
    """Evaluate on `split`; write report.json, report.md and figures into `out`; return the report."""
    from edge_bus.intervals import classification_intervals, segmentation_intervals
    from edge_bus.metrics import classification_report, segmentation_report

    loaded = load_any(model_path, device, batch_size)
    pack = load_pack(pack_path)
    if loaded.split_hash and pack.split_hash != loaded.split_hash:
        raise ConfigError(
            f"{pack_path}: this pack was built from split {pack.split_hash[:12]}, the model was trained on split "
            f"{loaded.split_hash[:12]}; evaluate with the pack of the training split"
        )
    arrays = split_arrays(pack, split, loaded.spec.size)
    if len(arrays) == 0:
        raise ConfigError(f"{pack_path}: split {split!r} is empty")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    outputs = loaded.predict(arrays.images)
    report: dict[str, Any] = {
        "model": loaded.name, "task": loaded.task, "source": str(loaded.source), "split": split, "n": len(arrays),
        "resolution": loaded.spec.size, "pack_resolution": pack.spec.size, "split_hash": pack.split_hash,
        "pack": str(pack_path), "warnings": resize_warnings(pack_path, pack.spec.size, loaded.spec.size),
        "train": {k: loaded.train[k] for k in TRAIN_KEYS if k in loaded.train},
        **loaded.fingerprints, "pack_sha256": pack.content_sha256(),
    }
    figures: dict[str, str] = {}
    if loaded.task == "classification":
        predicted = outputs.argmax(axis=1)
        cls = classification_report(arrays.labels, predicted, loaded.classes)
        cls["per_image"] = per_image_classes(arrays.ids, arrays.labels, outputs, loaded.classes)
        report["classification"] = cls
        report["intervals"] = classification_intervals(arrays.labels, predicted, len(loaded.classes))
        from edge_bus.plots import plot_confusion_matrix

        figures["confusion_matrix"] = str(plot_confusion_matrix(
            np.asarray(cls["confusion_matrix"]), loaded.classes, out / "confusion_matrix.png", title=f"{loaded.name} ({split})"
        ))
    else:
        masks = outputs > loaded.threshold
        seg = segmentation_report(masks, arrays.masks, arrays.labels, loaded.classes)
        report["segmentation"] = {k: v for k, v in seg.items() if k != "per_image"}
        per_image = seg["per_image"]
        report["segmentation"]["per_image"] = [
            {"id": i, "lesion": h, "iou": a, "dice": b}
            for i, h, a, b in zip(arrays.ids, per_image["lesion"], per_image["iou"], per_image["dice"])
        ]
        ious = np.asarray(per_image["iou"])
        report["intervals"] = segmentation_intervals(ious, per_image["dice"], per_image["lesion"])
        figures["overlays"] = str(plot_overlays(arrays, masks, ious, out / "overlays.png", n_overlays))
    report["figures"] = figures
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", markdown_report(report))
    return report


def per_image_classes(ids: list[str], labels: np.ndarray, logits: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """Each image's true and predicted class and softmax probabilities (4 decimals), so a report
    names the images it got wrong and two reports on the same images can be compared."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return [
        {"id": i, "truth": classes[int(t)], "predicted": classes[int(p.argmax())], "probabilities": [round(float(x), 4) for x in p]}
        for i, t, p in zip(ids, labels, probs)
    ]


def resize_warnings(pack_path: str | Path, pack_size: int, model_size: int) -> list[str]:
    """The note for a pack whose images are resized to the model's size (none when they match)."""
    if pack_size == model_size:
        return []
    return [
        f"{pack_path} holds {pack_size} px images and the model takes {model_size} px: they are resized here, so "
        f"these figures differ from those on a pack made at {model_size} px (`edge-bus data pack MANIFEST --size {model_size}`)"
    ]


def overlay_cases(ious: np.ndarray, has_lesion: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Indices of the `n` best cases among lesion images (an empty mask predicted empty scores 1
    and would fill the row with normal images) and the `n` worst over all images."""
    order = np.argsort(ious, kind="stable")
    lesion_order = order[np.asarray(has_lesion, dtype=bool)[order]]
    return {"best": lesion_order[::-1][:n], "worst": order[:n]}


def plot_overlays(arrays: SplitArrays, preds: np.ndarray, ious: np.ndarray, path: Path, n: int = 4) -> Path:
    """Two rows: the `n` best lesion images and the `n` worst images by IoU; ground truth green,
    prediction red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, min(n, len(ious)))
    rows = overlay_cases(ious, arrays.masks.reshape(len(arrays.masks), -1).any(axis=1), n)
    fig, axes = plt.subplots(2, n, figsize=(2.4 * n, 5.2), squeeze=False)
    for r, (title, idx) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(idx):
                continue
            i = int(idx[c])
            rgb = np.repeat(arrays.images[i][..., None], 3, axis=2).astype(np.float32) / 255.0
            rgb[arrays.masks[i] > 0] = 0.6 * rgb[arrays.masks[i] > 0] + 0.4 * np.array([0, 1, 0])
            rgb[preds[i] > 0] = 0.6 * rgb[preds[i] > 0] + 0.4 * np.array([1, 0, 0])
            ax.imshow(rgb)
            ax.set_title(f"{title}: IoU {ious[i]:.2f}\n{arrays.ids[i]}", fontsize=7)
    fig.suptitle("green: ground truth, red: prediction", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)


def _warm_start_lines(train: dict[str, Any]) -> list[str]:
    """Where the first weights came from, when not from scratch or ImageNet."""
    lines = []
    if train.get("encoder_source"):
        e = train["encoder_source"]
        lines.append(f"- encoder started from: {e['model']} `{e['path']}` (weights `{str(e.get('weights_sha256', ''))[:16]}`)")
    if train.get("init_source"):
        i = train["init_source"]
        lines.append(f"- started from: `{i['path']}` ({i['kind']})")
    return lines


def markdown_report(report: dict[str, Any]) -> str:
    from edge_bus.intervals import text

    lines = [f"# Evaluation of {report['model']} on the {report['split']} split", "",
             f"- model file: `{report['source']}`", f"- images: {report['n']} at {report['resolution']} px",
             f"- split hash: `{report['split_hash'][:16]}`"]
    if report.get("weights_sha256"):
        lines.append(f"- weights fingerprint (SHA-256): `{report['weights_sha256'][:16]}`")
    if report.get("member_weights_sha256"):
        lines.append("- member weights fingerprints: " + ", ".join(f"`{h[:16]}`" for h in report["member_weights_sha256"]))
    if report.get("pack_sha256"):
        trained_on = report.get("train", {}).get("pack_sha256")
        same = "" if not trained_on else " (the pack it was trained on)" if trained_on == report["pack_sha256"] else (
            f" (not the pack it was trained on, `{trained_on[:16]}`: another pack size, or images decoded or resized by "
            "other library versions)")
        lines.append(f"- pack pixels fingerprint: `{report['pack_sha256'][:16]}`{same}")
    train = report.get("train", {})
    if train.get("cpu") or train.get("gpu"):
        how = train.get("gpu") or f"{train['cpu']}, {train.get('cpu_capability', '?')} kernels, {train.get('threads', '?')} threads"
        lines.append(f"- trained on: {train.get('device', '?')}, {how}")
    lines += _warm_start_lines(train)
    lines.append("")
    lines += [f"**Warning:** {w}" for w in report.get("warnings", [])] + ([""] if report.get("warnings") else [])
    if "classification" in report:
        cls = report["classification"]
        ci = report.get("intervals", {})
        lines += [f"**Weighted F1: {_fmt(cls['weighted_f1'])}**{text(ci.get('weighted_f1'))}, accuracy {_fmt(cls['accuracy'])}"
                  f"{text(ci.get('accuracy'))}, macro F1 {_fmt(cls['macro_f1'])}", "",
                  "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for name, row in cls["per_class"].items():
            lines.append(f"| {name} | {_fmt(row['precision'])} | {_fmt(row['recall'])} | {_fmt(row['f1'])} | {row['support']} |")
        lines += ["", "Confusion matrix (rows: truth, columns: prediction):", "",
                  "| | " + " | ".join(cls["classes"]) + " |", "|---" * (len(cls["classes"]) + 1) + "|"]
        for name, row in zip(cls["classes"], cls["confusion_matrix"]):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
        wrong = [r for r in cls.get("per_image", []) if r["truth"] != r["predicted"]]
        if wrong:
            lines += ["", f"Misclassified ({len(wrong)}): " + ", ".join(f"{r['id']} → {r['predicted']}" for r in wrong)]
    else:
        seg = report["segmentation"]
        ci = report.get("intervals", {})
        lines += ["| images | n | mean IoU | mean Dice |", "|---|---|---|---|"]
        for key in ("all_images", "lesion_only", "empty_only"):
            s, c = seg[key], ci.get(key) or {}
            lines.append(f"| {key.replace('_', ' ')} | {s['n']} | {_fmt(s['iou'])}{text(c.get('iou'))} | {_fmt(s['dice'])}{text(c.get('dice'))} |")
        for name, s in seg.get("per_class", {}).items():
            lines.append(f"| class {name} | {s['n']} | {_fmt(s['iou'])} | {_fmt(s['dice'])} |")
        lines += ["", f"Empty-mask rule: {seg['empty_mask_rule']}."]
    if report.get("intervals"):
        ci = report["intervals"]
        lines += ["", f"In brackets: {ci['level']:.0%} intervals, {ci['method']} ({ci['resamples']} resamples, seed {ci['seed']}). "
                  f"They cover which images happen to be in the {report['split']} split, not how far another training run would move "
                  "the figure."]
    for name, path in report.get("figures", {}).items():
        lines += ["", f"![{name}]({Path(path).name})"]
    return "\n".join(lines) + "\n"
