# `make engine`: engined in the background on a private socket under .engine/ (state there
# too); prints CONTAINER_RUNTIME_ENDPOINT=unix://... last. `make engine-down` stops it.
# Both are idempotent. Extra daemon flags: ENGINE_FLAGS='--exec-driver runc ...'.
ENGINE_DIR ?= $(CURDIR)/.engine
ENGINE_SOCK := $(ENGINE_DIR)/engine.sock
ENGINE_PID := $(ENGINE_DIR)/engined.pid
ENGINE_LOG := $(ENGINE_DIR)/engined.log
ENGINE_FLAGS ?=

.PHONY: engine engine-down

engine: venv ## start engined in the background; prints CONTAINER_RUNTIME_ENDPOINT=... last
	@mkdir -p $(ENGINE_DIR)
	@if [ -f $(ENGINE_PID) ] && kill -0 $$(cat $(ENGINE_PID)) 2>/dev/null; then \
	  echo "engined already running (pid $$(cat $(ENGINE_PID)))"; \
	else \
	  rm -f $(ENGINE_PID); \
	  setsid nohup $(PY) -m cri.daemon --listen unix://$(ENGINE_SOCK) --root $(ENGINE_DIR)/root \
	    --run-root $(ENGINE_DIR)/run $(ENGINE_FLAGS) >>$(ENGINE_LOG) 2>&1 & echo $$! >$(ENGINE_PID); \
	  for i in $$(seq 1 600); do \
	    [ -S $(ENGINE_SOCK) ] && break; \
	    kill -0 $$(cat $(ENGINE_PID)) 2>/dev/null || { echo "engined failed to start, see $(ENGINE_LOG):" >&2; tail -n 20 $(ENGINE_LOG) >&2; rm -f $(ENGINE_PID); exit 1; }; \
	    sleep 0.1; \
	  done; \
	  [ -S $(ENGINE_SOCK) ] || { echo "engined did not create $(ENGINE_SOCK) in 60s" >&2; exit 1; }; \
	fi
	@echo "CONTAINER_RUNTIME_ENDPOINT=unix://$(ENGINE_SOCK)"

engine-down: ## stop the engined that `make engine` started (SIGTERM, then SIGKILL after 15s)
	@if [ -f $(ENGINE_PID) ]; then \
	  pid=$$(cat $(ENGINE_PID)); \
	  if kill -0 $$pid 2>/dev/null; then \
	    kill -TERM $$pid; \
	    for i in $$(seq 1 150); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
	    kill -0 $$pid 2>/dev/null && kill -KILL $$pid; \
	  fi; \
	  rm -f $(ENGINE_PID); \
	fi
	@echo "engined stopped"

# `make critest`: a private engined (state in .engine/critest/) wired to the local registry's
# mirrors and to the reference CNI bridge plugins, then critest against it; prints the
# pass/fail/skip counts and the failing spec names. CRITEST_ARGS adds ginkgo flags
# (e.g. CRITEST_ARGS='--ginkgo.focus=Streaming'); CRITEST_DRIVER picks the exec driver.
CRITEST_DIR ?= $(CURDIR)/.engine/critest
CRITEST_DRIVER ?= native
CRITEST_ARGS ?=
CRITEST_SUBNET ?= 10.199.0.0/24

.PHONY: critest

critest: venv ## critest against a fresh engined (make registry first); counts + failing specs
	@test -f $(CURDIR)/.registry/mirrors.yaml || { echo "run \`make registry\` first" >&2; exit 1; }
	@bin=$$($(PY) hack/tools/build.py --print-bin | sed 's/^TOOLS_BIN=//'); \
	  test -x $$bin/critest || { echo "critest missing in $$bin: run \`make tools\`" >&2; exit 1; }; \
	  mkdir -p $(CRITEST_DIR)/net.d; \
	  printf '%s\n' '{"cniVersion":"1.0.0","name":"critest","plugins":[{"type":"bridge","bridge":"kpycrit0","isGateway":true,"hairpinMode":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"$(CRITEST_SUBNET)"}]],"dataDir":"$(CRITEST_DIR)/ipam"}},{"type":"portmap","capabilities":{"portMappings":true}}]}' \
	    >$(CRITEST_DIR)/net.d/10-critest.conflist; \
	  $(MAKE) --no-print-directory engine ENGINE_DIR=$(CRITEST_DIR) \
	    ENGINE_FLAGS="--registry-hosts $(CURDIR)/.registry/mirrors.yaml --cni-conf-dir $(CRITEST_DIR)/net.d --cni-bin-dir $$bin --exec-driver $(CRITEST_DRIVER)" >/dev/null || exit 1; \
	  ep=unix://$(CRITEST_DIR)/engine.sock; \
	  $$bin/critest --runtime-endpoint $$ep --image-endpoint $$ep --ginkgo.no-color $(CRITEST_ARGS) \
	    >$(CRITEST_DIR)/critest.log 2>&1; rc=$$?; \
	  for pod in $$($$bin/crictl -r $$ep -i $$ep pods -q 2>/dev/null); do \
	    $$bin/crictl -r $$ep -i $$ep rmp -f $$pod >/dev/null 2>&1; done; \
	  $(MAKE) --no-print-directory engine-down ENGINE_DIR=$(CRITEST_DIR) >/dev/null; \
	  ip link del kpycrit0 2>/dev/null; \
	  grep -E '^(Ran [0-9]+ of|FAIL!|SUCCESS!)' $(CRITEST_DIR)/critest.log; \
	  grep -E '^\s*\[FAIL\]' $(CRITEST_DIR)/critest.log | sed 's/^ *\[FAIL\] */FAILED: /' | sort -u; \
	  echo "full log: $(CRITEST_DIR)/critest.log"; exit $$rc
