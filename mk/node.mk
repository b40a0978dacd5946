# `make node`: kubelet-py joined to `make cluster` with a bootstrap token, running on the CRI
# of `make engine` (or NODE_RUNTIME_ENDPOINT=unix://... for another runtime, e.g. containerd);
# state, certificates, pod logs and its log under $(NODE_DIR). Waits until the node is Ready.
# Restarting reuses the kubeconfig `join` wrote. `make node-down` stops it and deletes the
# Node. Both are idempotent. Extra kubelet flags: NODE_FLAGS='--max-pods 50 ...'.
# The node IP is a loopback address (the API server reaches the kubelet API on it, at
# NODE_IP:NODE_PORT); override with NODE_IP=127.0.0.x. Logs, exec, attach and port-forward
# work through the API server on it; its node proxy (`kubectl get --raw
# /api/v1/nodes/N/proxy/...`) refuses loopback node addresses by design.
NODE_DIR ?= $(CURDIR)/.node
NODE_NAME ?= kubelet-py-$(shell hostname | tr A-Z a-z)
NODE_PID := $(NODE_DIR)/kubelet-py.pid
NODE_LOG := $(NODE_DIR)/kubelet-py.log
NODE_FLAGS ?=
NODE_IP ?= 127.0.0.2
NODE_PORT ?= 10250
NODE_RUNTIME_ENDPOINT ?=

.PHONY: node node-down node-status

node: cluster ## join kubelet-py to `make cluster` on engined's CRI; waits for Ready
	@set -a; . $(CLUSTER_DIR)/env; set +a; \
	endpoint="$(NODE_RUNTIME_ENDPOINT)"; \
	if [ -z "$$endpoint" ]; then \
	  endpoint=$$($(MAKE) --no-print-directory engine | sed -n 's/^CONTAINER_RUNTIME_ENDPOINT=//p'); \
	fi; \
	[ -n "$$endpoint" ] || { echo "no CRI endpoint (make engine failed?)" >&2; exit 1; }; \
	mkdir -p $(NODE_DIR); \
	if [ -f $(NODE_PID) ] && kill -0 $$(cat $(NODE_PID)) 2>/dev/null; then \
	  echo "kubelet-py already running (pid $$(cat $(NODE_PID)))"; \
	else \
	  common="--root-dir $(NODE_DIR)/root --pod-logs-dir $(NODE_DIR)/logs \
	    --hostname-override $(NODE_NAME) --node-ip $(NODE_IP) --address $(NODE_IP) \
	    --port $(NODE_PORT) \
	    --container-runtime-endpoint $$endpoint $(NODE_FLAGS)"; \
	  if [ -f $(NODE_DIR)/root/kubeconfig ]; then \
	    args="--kubeconfig $(NODE_DIR)/root/kubeconfig $$common"; \
	  else \
	    args="join --server $$SERVER --token $$TOKEN --discovery-token-ca-cert-hash $$CA_CERT_HASH $$common"; \
	  fi; \
	  setsid nohup $(PY) -m kubelet_py.cli $$args >>$(NODE_LOG) 2>&1 & echo $$! >$(NODE_PID); \
	fi; \
	tools="$${TOOLS_BIN:-$$($(PY) hack/tools/build.py --print-bin | sed 's/^TOOLS_BIN=//')}"; \
	for i in $$(seq 1 300); do \
	  kill -0 $$(cat $(NODE_PID)) 2>/dev/null || { echo "kubelet-py exited, see $(NODE_LOG):" >&2; tail -n 20 $(NODE_LOG) >&2; rm -f $(NODE_PID); exit 1; }; \
	  st=$$($$tools/kubectl --kubeconfig $$KUBECONFIG get node $(NODE_NAME) \
	    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null); \
	  [ "$$st" = "True" ] && { echo "node $(NODE_NAME) Ready (runtime $$endpoint)"; exit 0; }; \
	  sleep 0.2; \
	done; \
	echo "node $(NODE_NAME) not Ready after 60s, see $(NODE_LOG)" >&2; exit 1

node-down: ## stop kubelet-py (SIGTERM, SIGKILL after 15s) and delete its Node object
	@if [ -f $(NODE_PID) ]; then \
	  pid=$$(cat $(NODE_PID)); \
	  if kill -0 $$pid 2>/dev/null; then \
	    kill -TERM $$pid; \
	    for i in $$(seq 1 150); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
	    kill -0 $$pid 2>/dev/null && kill -KILL $$pid; \
	  fi; \
	  rm -f $(NODE_PID); \
	fi
	@if [ -f $(CLUSTER_DIR)/env ]; then \
	  set -a; . $(CLUSTER_DIR)/env; set +a; \
	  TOOLS_BIN="$${TOOLS_BIN:-$$($(PY) hack/tools/build.py --print-bin | sed 's/^TOOLS_BIN=//')}"; \
	  $$TOOLS_BIN/kubectl --kubeconfig $$KUBECONFIG delete node $(NODE_NAME) --ignore-not-found \
	    --wait=false >/dev/null 2>&1 || true; \
	fi
	@echo "kubelet-py stopped"

node-status: ## say whether kubelet-py from `make node` runs
	@if [ -f $(NODE_PID) ] && kill -0 $$(cat $(NODE_PID)) 2>/dev/null; then \
	  echo "kubelet-py running (pid $$(cat $(NODE_PID)), log $(NODE_LOG))"; \
	else echo "kubelet-py not running"; fi
