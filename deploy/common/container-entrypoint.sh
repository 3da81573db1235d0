#!/usr/bin/env bash
# Entry point of the edge-bus containers: build the TensorRT engines when needed (the GPU is only
# there at run time, not at `docker build`), then hand over to `edge-bus "$@"`.
set -euo pipefail

config="${EDGE_BUS_CONFIG:-/etc/edge-bus/config.yaml}"
if [[ "${1:-}" == "run" && -f "${config}" ]]; then
    edge-bus-build-engines "${config}"
fi
exec edge-bus "$@"
