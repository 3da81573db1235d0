#!/usr/bin/env bash
# Build the TensorRT engines of the bundles named in the edge-bus run configuration, on this device.
#
# Run by edge-bus-engines.service (a oneshot before edge-bus.service) at first boot and after every
# boot; it does the work only when something that goes into an engine changed: the config, a
# bundle's ONNX model, the TensorRT version or the GPU/L4T release. The stamp of the last successful
# build is kept in $STATE_DIRECTORY/engines.stamp; delete it to force a rebuild.
#
# usage: edge-bus-build-engines [CONFIG]     (default /etc/edge-bus/config.yaml)
set -euo pipefail

config="${1:-/etc/edge-bus/config.yaml}"
state_dir="${STATE_DIRECTORY:-/var/lib/edge-bus}"
venv="${EDGE_BUS_VENV:-/opt/edge-bus/venv}"
stamp_file="${state_dir}/engines.stamp"

log() { printf 'edge-bus-build-engines: %s\n' "$*" >&2; }

if [[ ! -f "${config}" ]]; then
    log "no config at ${config}; nothing to build"
    exit 0
fi

# backend, precision, then one bundle folder per line, as the runtime reads them
mapfile -t facts < <("${venv}/bin/python" - "${config}" <<'PY'
import sys
from edge_bus.runtime.config import load_run_config
c = load_run_config(sys.argv[1])
print(c.backend)
print(c.precision)
for bundle in (c.classifier, c.segmenter):
    if bundle:
        print(bundle)
PY
)
backend="${facts[0]}"
precision="${facts[1]}"
bundles=("${facts[@]:2}")

if [[ "${backend}" != "tensorrt" && "${backend}" != "auto" ]]; then
    log "backend is ${backend}: no TensorRT engine needed"
    exit 0
fi
trt_version="$("${venv}/bin/python" -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)"
if [[ -z "${trt_version}" ]]; then
    log "TensorRT is not importable in ${venv}; skipping (backend auto will use ONNX Runtime)"
    exit 0
fi
# `edge-bus export build-engine` drives CUDA through cuda-python (cuda.bindings, or cuda.cudart before 12.6)
if ! "${venv}/bin/python" -c 'from edge_bus.engine_cache import cudart_module; cudart_module()' 2>/dev/null; then
    advice="install it: ${venv}/bin/pip install 'cuda-python>=12,<13' (CUDA 12: JetPack 6, TensorRT 10)"
    if [[ "${backend}" == "tensorrt" ]]; then
        log "cuda-python is not importable in ${venv}, TensorRT cannot build engines; ${advice}"
        exit 1
    fi
    log "cuda-python is not importable in ${venv}; skipping (backend auto will use ONNX Runtime); ${advice}"
    exit 0
fi
# precision auto runs the best fresh engine (fp16 first): build fp16, build-engine's default
build_precision="${precision}"
if [[ "${precision}" == "auto" ]]; then
    build_precision="fp16"
fi

stamp="$({
    printf 'tensorrt %s precision %s\n' "${trt_version}" "${build_precision}"
    cat /etc/nv_tegra_release 2>/dev/null || true
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
    sha256sum "${config}"
    for bundle in "${bundles[@]}"; do
        sha256sum "${bundle}"/*.onnx 2>/dev/null || printf 'no onnx in %s\n' "${bundle}"
    done
} | sha256sum | cut -d' ' -f1)"

if [[ -f "${stamp_file}" && "$(cat "${stamp_file}")" == "${stamp}" ]]; then
    log "engines up to date (stamp ${stamp:0:12})"
    exit 0
fi

for bundle in "${bundles[@]}"; do
    log "building ${build_precision} engine for ${bundle} with TensorRT ${trt_version} (this takes minutes)"
    "${venv}/bin/edge-bus" export build-engine "${bundle}" --precision "${build_precision}"
done
printf '%s\n' "${stamp}" > "${stamp_file}.tmp"
mv -f "${stamp_file}.tmp" "${stamp_file}"
log "done"
