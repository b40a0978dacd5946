#!/usr/bin/env bash
# `make run`: the node's main job on this machine, in standalone mode (no API server):
# the local registry with the test images (upstream names resolve to it), our CNI plugins and
# conflist, engined on them, and kubelet-py running the static pods of manifests/static/.
# Ctrl-C stops the kubelet (the pods keep running in the engine, as with any kubelet);
# `make run-down` removes the pods and stops engined and the registry. RUN_DIR (default
# .run/) holds the state.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${RUN_DIR:-$PWD/.run}"
POD_CIDR="${POD_CIDR:-10.88.0.0/24}"
REGISTRY_DIR="${REGISTRY_DIR:-$PWD/.registry}"
export REGISTRY_DIR
mkdir -p "$RUN_DIR"
ENGINE_DIR="$RUN_DIR/engine"

if [ "${1:-}" = "--down" ]; then
  # Pods outlive engined by design, so remove them through the CRI first; engined recovers
  # them from disk if it was stopped meanwhile, so start it (idempotent) to do that.
  if [ -d "$ENGINE_DIR/run" ]; then
    make -s engine ENGINE_DIR="$ENGINE_DIR" >/dev/null
    tools=$(.venv/bin/python hack/tools/build.py --print-bin | sed 's/^TOOLS_BIN=//')
    "$tools/crictl" --runtime-endpoint "unix://$ENGINE_DIR/engine.sock" --timeout 120s \
      rmp -fa >/dev/null || { echo "make run-down: could not remove the pods" >&2; exit 1; }
  fi
  make -s engine-down ENGINE_DIR="$ENGINE_DIR" >/dev/null
  make -s registry-down
  exit 0
fi

make -s registry >/dev/null
make -s cni-plugins cni-config >/dev/null
endpoint=$(make -s engine ENGINE_DIR="$ENGINE_DIR" \
  ENGINE_FLAGS="--registry-hosts $REGISTRY_DIR/mirrors.yaml" \
  | sed -n 's/^CONTAINER_RUNTIME_ENDPOINT=//p')
[ -n "$endpoint" ] || { echo "make run: engined did not start (see $ENGINE_DIR/engined.log)" >&2; exit 1; }

tools=$(.venv/bin/python hack/tools/build.py --print-bin | sed 's/^TOOLS_BIN=//')
cat >&2 <<MSG
make run: engined serves the CRI on $endpoint
  watch the static pods:  $tools/crictl --runtime-endpoint $endpoint pods
                          $tools/crictl --runtime-endpoint $endpoint ps
  stop everything:        Ctrl-C, then make run-down
MSG
exec .venv/bin/kubelet-py \
  --container-runtime-endpoint "$endpoint" \
  --pod-manifest-path "$PWD/manifests/static" \
  --pod-cidr "$POD_CIDR" \
  --root-dir "$RUN_DIR/kubelet" \
  --pod-logs-dir "$RUN_DIR/pod-logs" \
  --healthz-port 0 \
  --hostname-override "$(hostname | tr A-Z a-z)"
