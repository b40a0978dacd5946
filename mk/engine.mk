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
	  nohup $(PY) -m cri.daemon --listen unix://$(ENGINE_SOCK) --root $(ENGINE_DIR)/root \
	    --run-root $(ENGINE_DIR)/run $(ENGINE_FLAGS) >>$(ENGINE_LOG) 2>&1 & echo $$! >$(ENGINE_PID); \
	  for i in $$(seq 1 100); do \
	    [ -S $(ENGINE_SOCK) ] && break; \
	    kill -0 $$(cat $(ENGINE_PID)) 2>/dev/null || { echo "engined failed to start, see $(ENGINE_LOG):" >&2; tail -n 20 $(ENGINE_LOG) >&2; rm -f $(ENGINE_PID); exit 1; }; \
	    sleep 0.1; \
	  done; \
	  [ -S $(ENGINE_SOCK) ] || { echo "engined did not create $(ENGINE_SOCK) in 10s" >&2; exit 1; }; \
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
