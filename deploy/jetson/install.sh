#!/usr/bin/env bash
# Install edge-bus on a Jetson (JetPack 6 / L4T R36, Python 3.10) as a boot-time service.
#
#   sudo deploy/jetson/install.sh --bundles /media/usb/bundles --usb-id 534d:2109
#
# Options:
#   --bundles DIR     copy every bundle folder below DIR to /var/lib/edge-bus/bundles
#   --usb-id VID:PID  the capture card's USB ids (lsusb) for the udev rule /dev/edge-bus-capture
#   --no-start        install and enable, but do not build engines or start now
#   --src DIR         edge-bus source tree or wheel (default: this checkout)
# Safe to run again (idempotent). TensorRT, CUDA and OpenCV (with GStreamer) come from JetPack:
# the venv sees them through --system-site-packages; pip's opencv and torch are not installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../common/install-lib.sh
source "${here}/../common/install-lib.sh"

src="$(cd "${here}/../.." && pwd)"
bundles=""
usb_id=""
start=yes
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bundles) bundles="${2:?--bundles needs a folder}"; shift 2 ;;
        --usb-id) usb_id="${2:?--usb-id needs VID:PID}"; shift 2 ;;
        --no-start) start=no; shift ;;
        --src) src="${2:?--src needs a folder or wheel}"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

require_root "$@"
[[ -f /etc/nv_tegra_release ]] || die "this is not a Jetson (no /etc/nv_tegra_release); use deploy/desktop/install.sh"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "edge-bus needs Python >= 3.10: flash JetPack 6 (L4T R36); JetPack 5 ships Python 3.8"

log "installing system packages (JetPack's OpenCV and TensorRT Python bindings, GStreamer, v4l-utils)"
apt-get update
apt-get install -y --no-install-recommends python3-venv python3-pip python3-numpy v4l-utils \
    gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
# JetPack's own packages (from NVIDIA's L4T apt repository); a full JetPack install already has them
if ! python3 -c 'import cv2' 2>/dev/null; then
    apt-get install -y --no-install-recommends nvidia-opencv || die "cannot install JetPack's OpenCV (nvidia-opencv)"
fi
if ! python3 -c 'import tensorrt' 2>/dev/null; then
    apt-get install -y --no-install-recommends python3-libnvinfer || warn "no TensorRT Python bindings: backend auto will use ONNX Runtime"
fi
python3 - <<'PY' || warn "the system OpenCV has no GStreamer: gst pipelines and csi:// will not work"
import re, sys, cv2
sys.exit(not re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()))
PY

ensure_user
make_venv "${src}" -r "${here}/requirements-runtime.txt"
# pip's opencv would shadow JetPack's OpenCV (which has GStreamer): make sure it is not in the venv
"${VENV}/bin/python" -m pip uninstall --quiet --yes opencv-python opencv-python-headless >/dev/null 2>&1 || true

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
