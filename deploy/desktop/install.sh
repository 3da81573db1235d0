#!/usr/bin/env bash
# Install edge-bus on an x86_64 Linux workstation with an NVIDIA GPU as a boot-time service.
#
#   sudo deploy/desktop/install.sh --bundles ~/bundles --usb-id 534d:2109
#
# Options:
#   --bundles DIR     copy every bundle folder below DIR to /var/lib/edge-bus/bundles
#   --usb-id VID:PID  the capture card's USB ids (lsusb) for the udev rule /dev/edge-bus-capture
#   --no-tensorrt     do not install TensorRT from PyPI (ONNX Runtime only)
#   --no-start        install and enable, but do not build engines or start now
#   --src DIR         edge-bus source tree or wheel (default: this checkout)
# Needs the NVIDIA driver (nvidia-smi works). Safe to run again (idempotent).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../common/install-lib.sh
source "${here}/../common/install-lib.sh"

src="$(cd "${here}/../.." && pwd)"
bundles=""
usb_id=""
start=yes
tensorrt=yes
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bundles) bundles="${2:?--bundles needs a folder}"; shift 2 ;;
        --usb-id) usb_id="${2:?--usb-id needs VID:PID}"; shift 2 ;;
        --no-tensorrt) tensorrt=no; shift ;;
        --no-start) start=no; shift ;;
        --src) src="${2:?--src needs a folder or wheel}"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

require_root "$@"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "edge-bus needs Python >= 3.10"
command -v nvidia-smi >/dev/null || warn "nvidia-smi not found: install the NVIDIA driver for TensorRT (or use backend onnxruntime)"

if command -v apt-get >/dev/null; then
    apt-get update
    apt-get install -y --no-install-recommends python3-venv v4l-utils
fi

ensure_user
deps=(-r "${here}/requirements-runtime.txt")
if [[ "${tensorrt}" == yes ]]; then
    # one CUDA major for both: TensorRT 10's CUDA 12 wheel (the bare `tensorrt` may pick another CUDA)
    # and cuda-python 12; the NVIDIA driver must support CUDA 12 (nvidia-smi shows "CUDA Version")
    deps+=("tensorrt-cu12>=10,<11" "cuda-python>=12,<13")
fi
make_venv "${src}" "${deps[@]}"

install_config "${here}/config.yaml"
if [[ -n "${bundles}" ]]; then
    install_bundles "${bundles}"
fi
install_udev_rule "${here}/../common/70-edge-bus-capture.rules" "${usb_id}"
install_units "${here}"
enable_services "${start}"

log "what the runtime finds here:"
edge-bus info --config "${ETC_DIR}/config.yaml" || warn "edge-bus info reports a problem (see above)"
print_next_steps
