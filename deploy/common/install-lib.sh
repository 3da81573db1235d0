# shellcheck shell=bash
# Functions shared by deploy/jetson/install.sh and deploy/desktop/install.sh. Every step is
# idempotent: running the installer again updates the package, units and rule, and keeps an edited
# /etc/edge-bus/config.yaml (the new example is written next to it as config.yaml.new).

PREFIX="${PREFIX:-/opt/edge-bus}"
VENV="${PREFIX}/venv"
ETC_DIR="/etc/edge-bus"
STATE_DIR="/var/lib/edge-bus"
UNIT_DIR="/etc/systemd/system"
RULES_FILE="/etc/udev/rules.d/70-edge-bus-capture.rules"
SERVICE_USER="edge-bus"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
warn() { printf '\033[33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

require_root() {
    [[ "${EUID}" -eq 0 ]] || die "run as root: sudo $0 $*"
}

ensure_user() {
    if ! id -u "${SERVICE_USER}" >/dev/null 2>&1; then
        log "creating system user ${SERVICE_USER}"
        useradd --system --home-dir "${STATE_DIR}" --no-create-home --shell /usr/sbin/nologin "${SERVICE_USER}"
    fi
    # video: /dev/video* and, on a Jetson, the GPU device nodes (/dev/nvhost-*, /dev/nvmap)
    usermod --append --groups video "${SERVICE_USER}"
    install -d -o "${SERVICE_USER}" -g "${SERVICE_USER}" -m 0750 "${STATE_DIR}" "${STATE_DIR}/bundles" "${STATE_DIR}/results"
}

# make_venv SRC [pip args for the dependencies...]: venv with system site packages (TensorRT and,
# on a Jetson, OpenCV come from the system), then edge-bus itself without its pip dependencies.
make_venv() {
    local src="$1"
    shift
    if [[ ! -x "${VENV}/bin/python" ]]; then
        log "creating ${VENV} (with system site packages)"
        install -d -m 0755 "${PREFIX}"
        python3 -m venv --system-site-packages "${VENV}"
    fi
    "${VENV}/bin/python" -m pip install --quiet --upgrade pip
    log "installing runtime dependencies: $*"
    "${VENV}/bin/python" -m pip install --quiet "$@"
    log "installing edge-bus from ${src} (no torch)"
    "${VENV}/bin/python" -m pip install --quiet --no-deps --force-reinstall "${src}"
    ln -sf "${VENV}/bin/edge-bus" /usr/local/bin/edge-bus
}

install_config() {
    local example="$1"
    install -d -m 0755 "${ETC_DIR}"
    if [[ ! -f "${ETC_DIR}/config.yaml" ]]; then
        log "installing ${ETC_DIR}/config.yaml"
        install -m 0644 "${example}" "${ETC_DIR}/config.yaml"
    elif ! cmp -s "${example}" "${ETC_DIR}/config.yaml"; then
        warn "keeping your ${ETC_DIR}/config.yaml; the shipped example is ${ETC_DIR}/config.yaml.new"
        install -m 0644 "${example}" "${ETC_DIR}/config.yaml.new"
    fi
    "${VENV}/bin/python" -c 'import sys; from edge_bus.runtime.config import load_run_config; load_run_config(sys.argv[1])' \
        "${ETC_DIR}/config.yaml" || die "${ETC_DIR}/config.yaml does not load; fix it (the error names the key)"
}

# install_bundles DIR: copy every bundle folder (holding manifest.json) below DIR
install_bundles() {
    local from="$1" manifest bundle
    [[ -d "${from}" ]] || die "--bundles ${from}: no such folder"
    local found=0
    while IFS= read -r -d '' manifest; do
        bundle="$(dirname "${manifest}")"
        log "copying bundle $(basename "${bundle}")"
        rm -rf "${STATE_DIR}/bundles/$(basename "${bundle}").new"
        cp -a "${bundle}" "${STATE_DIR}/bundles/$(basename "${bundle}").new"
        rm -rf "${STATE_DIR}/bundles/$(basename "${bundle}")"
        mv "${STATE_DIR}/bundles/$(basename "${bundle}").new" "${STATE_DIR}/bundles/$(basename "${bundle}")"
        found=$((found + 1))
    done < <(find "${from}" -maxdepth 2 -name manifest.json -print0)
    [[ "${found}" -gt 0 ]] || die "--bundles ${from}: no bundle (folder with manifest.json) found"
    chown -R "${SERVICE_USER}:${SERVICE_USER}" "${STATE_DIR}/bundles"
}

# install_udev_rule RULE [VVVV:PPPP]
install_udev_rule() {
    local rule="$1" usb_id="${2:-}" vendor product tmp
    tmp="$(mktemp)"
    cp "${rule}" "${tmp}"
    if [[ -n "${usb_id}" ]]; then
        [[ "${usb_id}" =~ ^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$ ]] || die "--usb-id ${usb_id}: expected VVVV:PPPP in hex, e.g. 534d:2109 (see lsusb)"
        vendor="${BASH_REMATCH[1],,}"
        product="${BASH_REMATCH[2],,}"
        sed -i -e "s/VENDOR_ID/${vendor}/" -e "s/PRODUCT_ID/${product}/" "${tmp}"
    elif [[ -f "${RULES_FILE}" ]] && ! grep -q VENDOR_ID "${RULES_FILE}"; then
        log "keeping ${RULES_FILE} (ids already set)"
        rm -f "${tmp}"
        return 0
    else
        warn "no --usb-id given: the udev rule matches nothing until you set the ids in ${RULES_FILE}"
        warn "find them with: lsusb   (plug in the capture card first)"
    fi
    install -m 0644 "${tmp}" "${RULES_FILE}"
    rm -f "${tmp}"
    udevadm control --reload
    udevadm trigger --subsystem-match=video4linux || true
}

install_units() {
    local dir="$1" unit
    install -D -m 0755 "$(dirname "${BASH_SOURCE[0]}")/build-engines.sh" "${PREFIX}/bin/edge-bus-build-engines"
    for unit in edge-bus.service edge-bus-engines.service; do
        install -m 0644 "${dir}/${unit}" "${UNIT_DIR}/${unit}"
    done
    systemctl daemon-reload
}

enable_services() {
    local start="$1"
    systemctl enable edge-bus-engines.service edge-bus.service
    if [[ "${start}" == yes ]]; then
        log "building engines now (first run takes minutes; follow with journalctl -fu edge-bus-engines)"
        systemctl restart edge-bus-engines.service || warn "engine build failed: journalctl -u edge-bus-engines"
        if [[ -e /dev/edge-bus-capture ]]; then
            systemctl restart edge-bus.service
        else
            warn "/dev/edge-bus-capture is absent: edge-bus.service starts when the capture card is plugged in"
        fi
    fi
}

print_next_steps() {
    cat <<MSG

edge-bus is installed.
  check this machine:  edge-bus info --config ${ETC_DIR}/config.yaml
  logs:                journalctl -u edge-bus -f      (engines: journalctl -u edge-bus-engines)
  health:              cat /run/edge-bus/health.json
  config:              ${ETC_DIR}/config.yaml  (then: sudo systemctl restart edge-bus)
MSG
}
