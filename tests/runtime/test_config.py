"""RunConfig: YAML loading, validation errors that name the key, and command-line overrides."""

from __future__ import annotations

import textwrap

import pytest

from edge_bus.errors import ConfigError
from edge_bus.runtime.config import RunConfig, load_run_config, parse_roi


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_load_minimal_file_fills_defaults(tmp_path):
    cfg = load_run_config(write(tmp_path, "source: v4l2:///dev/video0\nsegmenter: /opt/b/seg\n"))
    assert cfg.source == "v4l2:///dev/video0" and cfg.segmenter == "/opt/b/seg"
    assert (cfg.backend, cfg.precision, cfg.batch, cfg.sinks, cfg.roi) == ("auto", "auto", 4, ["jsonl"], "none")
    assert cfg.health_file is None and cfg.health_port is None


def test_precision_auto_is_the_default_and_explicit_precisions_stay(tmp_path):
    assert RunConfig(source="a", classifier="b").precision == "auto"
    cfg = load_run_config(write(tmp_path, "source: a\nclassifier: b\nprecision: fp16\n"))
    assert cfg.precision == "fp16"
    assert cfg.merged(precision=None).precision == "fp16"  # not given on the command line: the file wins
    assert cfg.merged(precision="auto").precision == "auto"
    assert load_run_config(write(tmp_path, "source: a\nclassifier: b\n"), precision="int8").precision == "int8"


def test_int_is_accepted_where_a_number_is_expected(tmp_path):
    cfg = load_run_config(write(tmp_path, "source: a\nclassifier: b\nmax_wait_ms: 5\nfps: 30\n"))
    assert cfg.max_wait_ms == 5.0 and isinstance(cfg.max_wait_ms, float) and cfg.fps == 30.0


def test_unknown_key_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_run_config(write(tmp_path, "source: a\nclassifier: b\nbatchsize: 2\n"))
    msg = str(exc.value)
    assert "run.yaml" in msg and "'batchsize'" in msg and "batch" in msg and "max_wait_ms" in msg


@pytest.mark.parametrize(
    "line, key, words",
    [
        ("batch: 0", "batch", ">= 1"),
        ("batch: '4'", "batch", "integer"),
        ("batch: true", "batch", "integer"),
        ("backend: trt", "backend", "onnxruntime"),
        ("precision: fp8", "precision", "auto, fp32, fp16, int8"),
        ("precision: FP16", "precision", "lower case"),
        ("sinks: [jsonl, screen]", "sinks", "window"),
        ("sinks: [jsonl, jsonl]", "sinks", "twice"),
        ("roi: 1,2,3", "roi", "x,y,w,h"),
        ("roi: 0,0,0,10", "roi", "w, h >= 1"),
        ("device: gpu0", "device", "cuda:N"),
        ("health_interval_s: 0", "health_interval_s", "> 0"),
        ("health_port: 70000", "health_port", "1..65535"),
        ("width: 640", "height", "both"),
        ("allow_rejected: 'yes'", "allow_rejected", "true or false"),
        ("queue_size: null", "queue_size", "cannot be empty"),
        ("pixel_format: 'Y U Y V'", "pixel_format", "FOURCC"),
        ("pixel_format: NV1", "pixel_format", "exactly 4"),  # the v4l2 source needs exactly 4
        ("pixel_format: MJPEG", "pixel_format", "exactly 4"),
        ("max_failed_reads: -1", "max_failed_reads", ">= 0"),
        ("no_frame_timeout_s: 0", "no_frame_timeout_s", "> 0"),
        ("no_frame_timeout_s: soon", "no_frame_timeout_s", "a number"),
        ("out_per_run: true", "out_per_run", "needs 'out'"),
        ("keep_runs: 5", "keep_runs", "out_per_run: true"),
        ("allow_unchecked: 1", "allow_unchecked", "true or false"),
    ],
)
def test_invalid_values_name_the_key(tmp_path, line, key, words):
    with pytest.raises(ConfigError) as exc:
        load_run_config(write(tmp_path, f"source: a\nclassifier: b\n{line}\n"))
    msg = str(exc.value)
    assert f"'{key}'" in msg and words in msg, msg


def test_needs_source_and_a_bundle(tmp_path):
    with pytest.raises(ConfigError, match="'source' is required"):
        load_run_config(write(tmp_path, "classifier: b\n"))
    with pytest.raises(ConfigError, match="classifier.*segmenter"):
        load_run_config(write(tmp_path, "source: a\n"))


def test_missing_key_can_come_from_the_command_line(tmp_path):
    cfg = load_run_config(write(tmp_path, "classifier: b\nbatch: 2\n"), source="file://x.mp4", batch=None)
    assert cfg.source == "file://x.mp4" and cfg.batch == 2


def test_bad_yaml_and_missing_file_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="line 2"):
        load_run_config(write(tmp_path, "source: a\n  bad: [\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_run_config(write(tmp_path, "- a\n- b\n"))


def test_merged_overrides_only_given_values():
    base = RunConfig(source="a", classifier="b", batch=8, sinks=["jsonl", "overlay"])
    merged = base.merged(batch=None, backend="onnxruntime", sinks=None, source=None)
    assert (merged.batch, merged.backend, merged.sinks, merged.source) == (8, "onnxruntime", ["jsonl", "overlay"], "a")
    assert base.backend == "auto"  # a copy, the original is unchanged
    assert base.merged(sinks="jsonl,masks").sinks == ["jsonl", "masks"]
    with pytest.raises(ConfigError, match="'batch'"):
        base.merged(batch=0)
    with pytest.raises(ConfigError, match="valid keys"):
        base.merged(bogus=1)


def test_validate_catches_configs_built_in_code():
    with pytest.raises(ConfigError, match="'batch' must be an integer"):
        RunConfig(source="a", classifier="b", batch="4").validate()  # type: ignore[arg-type]
    assert RunConfig(source="a", segmenter="s").validate().segmenter == "s"


def test_roundtrip_through_dict():
    cfg = RunConfig(source="a", classifier="b", roi="10,20,300,200", width=640, height=480)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert parse_roi(cfg.roi) == (10, 20, 300, 200) and parse_roi("AUTO") == "auto"


def test_per_run_keys_and_four_character_pixel_formats(tmp_path):
    cfg = load_run_config(write(tmp_path, "source: a\nclassifier: b\nout: /r\nout_per_run: true\nkeep_runs: 3\n"
                                          "pixel_format: 'Y16 '\nmax_failed_reads: 0\nallow_unchecked: true\n"))
    assert (cfg.out_per_run, cfg.keep_runs, cfg.max_failed_reads, cfg.allow_unchecked) == (True, 3, 0, True)
    assert RunConfig(source="a", classifier="b").max_failed_reads == 5
    assert RunConfig(source="a", classifier="b").no_frame_timeout_s == 3.0
    assert load_run_config(write(tmp_path, "source: a\nclassifier: b\nno_frame_timeout_s: 10\n")).no_frame_timeout_s == 10.0
    assert RunConfig(source="a", classifier="b", pixel_format="MJPG").validate().pixel_format == "MJPG"
