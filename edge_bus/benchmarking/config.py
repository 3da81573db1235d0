"""What a benchmark run measures, and the checks that reject a bad request before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_bus.errors import ConfigError

DEPLOYED_MODELS = ("vgg19", "unet_vgg19", "deeplabv3_resnet101")
BACKENDS = ("onnxruntime", "torchscript", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
# Which bundle artifact a backend needs for a precision. "auto" is the runtime's default: TensorRT
# takes the best fresh engine, ONNX Runtime and TorchScript take FP32; rows are labelled with what
# the backend says it runs (`backend.precision`), never "auto". ONNX Runtime runs the FP32 graph
# (FP16 only through its TensorRT execution provider, checked in runner.prepare) or the statically
# quantized INT8 graph; TorchScript runs FP32 (FP16 only on a CUDA GPU); TensorRT runs engines
# built from the ONNX graphs on the device.
ARTIFACT_FOR: dict[str, dict[str, str]] = {
    "onnxruntime": {"auto": "onnx", "fp32": "onnx", "fp16": "onnx", "int8": "onnx_int8"},
    "torchscript": {"auto": "torchscript", "fp32": "torchscript", "fp16": "torchscript"},
    "tensorrt": {"auto": "onnx", "fp32": "onnx", "fp16": "onnx", "int8": "onnx"},
}
DEFAULT_PRECISIONS = ("auto",)
DEFAULT_BATCHES = (1, 4)
DEFAULT_BATCH_RANGE = (1, 8)  # batch range of the default (freshly exported) bundles
DEFAULT_SIZE = 256


@dataclass
class BenchmarkConfig:
    # None: every bundle in bundles_dir when that is given, else DEPLOYED_MODELS (resolved by validate)
    models: list[str] | None = None
    backends: list[str] = field(default_factory=lambda: ["onnxruntime"])
    precisions: list[str] = field(default_factory=lambda: list(DEFAULT_PRECISIONS))
    batches: list[int] = field(default_factory=lambda: list(DEFAULT_BATCHES))
    bundles_dir: Path | None = None  # trained bundles: <dir>/<model>/manifest.json
    cache_dir: Path | None = None  # default bundles; None = ~/.cache/edge-bus/default-bundles
    size: int = DEFAULT_SIZE
    warmup: int = 1
    iters: int = 10
    min_iters: int = 2
    max_seconds: float = 3.0  # time box of the timed loop of one configuration
    source: str = "synthetic://?fps=0&size=256x256"
    data: Path | None = None  # BUSI folder: adds accuracy on the test split
    split: Path | None = None  # split manifest; None = a seed-0 split made from `data`
    max_eval_images: int | None = None  # cap on test images per artifact (None = all)
    baseline: bool = True  # PyTorch eager FP32 batch 1, side by side
    pipeline: bool = True  # also run the runtime's threaded Pipeline at the largest batch
    pipeline_frames: int | None = None  # frames per pipeline run; None = largest batch x iters
    allow_rejected: bool = False  # run bundles that failed their parity gate
    device: str = "auto"
    threads: int | None = None
    out: Path = Path("benchmark-results")
    plots: bool = True
    command: str = "edge-bus benchmark"

    def validate(self) -> None:
        """Reject unknown names and impossible numbers, listing the valid choices."""
        if self.models is None:
            self.models = bundle_models(Path(self.bundles_dir)) if self.bundles_dir is not None else list(DEPLOYED_MODELS)
        check_choices("model", self.models, self.valid_models())
        check_choices("backend", self.backends, BACKENDS)
        check_choices("precision", self.precisions, PRECISIONS)
        # A precision no requested backend runs is a mistake; one that only some of them run is
        # measured where it can be and listed under "skipped" for the others (runner).
        for precision in self.precisions:
            if not any(precision in ARTIFACT_FOR[backend] for backend in self.backends):
                backend = self.backends[0]
                raise ConfigError(
                    f"--precision {precision} is not available with --backend {','.join(self.backends)}; "
                    f"{backend} runs: {', '.join(ARTIFACT_FOR[backend])}"
                )
        if not self.batches or any(b < 1 for b in self.batches):
            raise ConfigError(f"--batch sizes must be integers >= 1, got {self.batches}")
        if self.pipeline_frames is not None and self.pipeline_frames < 1:
            raise ConfigError(f"--pipeline-frames must be >= 1, got {self.pipeline_frames}")
        if self.iters < 1 or self.min_iters < 1 or self.warmup < 0 or self.max_seconds <= 0:
            raise ConfigError("--iters and --min-iters must be >= 1, --warmup >= 0 and --max-seconds > 0")
        if self.max_eval_images is not None and self.max_eval_images < 1:
            raise ConfigError(f"--max-eval-images must be >= 1 (or left out for all test images), got {self.max_eval_images}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1 (or left out for the library default), got {self.threads}")
        check_device(self.device)
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(f"--out {self.out} is a file; give a folder for benchmark.json, benchmark.md and the plots")
        if self.split is not None and self.data is None:
            raise ConfigError("--split needs --data (the BUSI folder the split manifest refers to)")
        if self.split is not None and not Path(self.split).is_file():
            raise ConfigError(f"--split {self.split}: no such file; write one with `edge-bus data split`")
        if self.data is not None:
            check_labelled_folder(Path(self.data))

    def valid_models(self) -> tuple[str, ...]:
        """The deployed models (a default bundle can be exported for each), plus the bundles folder's."""
        if self.bundles_dir is None or not Path(self.bundles_dir).is_dir():
            return DEPLOYED_MODELS
        return tuple(dict.fromkeys([*DEPLOYED_MODELS, *bundle_models(Path(self.bundles_dir))]))


DEVICE_HELP = "auto, cpu, cuda or cuda:N (N the GPU index)"


def check_device(device: str) -> None:
    """The --device forms the backends understand, refused here rather than by every backend in turn."""
    if device in ("auto", "cpu", "cuda"):
        return
    if device.startswith("cuda:") and device[5:].isdigit():
        return
    raise ConfigError(f"--device {device!r} is not a device; choose {DEVICE_HELP}")


def bundle_models(folder: Path) -> list[str]:
    """The models of a bundles folder: every <folder>/<model>/manifest.json, sorted."""
    if not folder.is_dir():
        raise ConfigError(f"--bundles {folder}: no such folder; it should hold <model>/manifest.json for each model")
    models = sorted(p.parent.name for p in folder.glob("*/manifest.json"))
    if not models:
        raise ConfigError(f"--bundles {folder}: no <model>/manifest.json in it; export bundles there with `edge-bus export`")
    return models


def check_choices(option: str, values: list[str], valid: tuple[str, ...] | None) -> None:
    if not values:
        raise ConfigError(f"--{option}: give at least one")
    if valid is None:
        return
    bad = [v for v in values if v not in valid]
    if bad:
        raise ConfigError(f"unknown {option} {', '.join(repr(b) for b in bad)}; choose from: {', '.join(valid)}")


def check_labelled_folder(root: Path) -> None:
    """A BUSI-layout folder: class sub-folders holding images and their *_mask files."""
    from edge_bus.data.busi import CLASSES

    if not root.is_dir():
        raise ConfigError(f"--data {root}: no such folder; pass a BUSI folder with {', '.join(CLASSES)} sub-folders")
    present = [c for c in CLASSES if (root / c).is_dir()]
    if not present:
        raise ConfigError(
            f"--data {root}: no labels (no class folder {', '.join(CLASSES)}); accuracy needs the BUSI layout "
            "<root>/<class>/<name>.png with <name>_mask.png next to it"
        )
    if not any(p.name.lower().endswith(("_mask.png", "_mask_1.png")) for c in present for p in (root / c).iterdir()):
        raise ConfigError(
            f"--data {root}: class folders {present} hold no *_mask.png files; accuracy needs the lesion masks "
            "next to the images (BUSI layout)"
        )


def check_batches(batches: list[int], batch_range: tuple[int, int], where: str) -> None:
    lo, hi = batch_range
    bad = [b for b in batches if not lo <= b <= hi]
    if bad:
        raise ConfigError(
            f"--batch {', '.join(map(str, bad))} is outside the batch range [{lo}, {hi}] of {where}; "
            f"choose batch sizes from {lo} to {hi}, or re-export with a wider range"
        )
