# Our CNI plugins (kpy-bridge, kpy-host-local, kpy-loopback) and the default conflist.
# CNI runtimes look a plugin `type` up as a file in their bin dirs: we write small
# executables there that hand each invocation to the resident CNI agent (started on demand
# by the first of them, exits when idle; engine/networkdriver/plugins/agent.py) and run the
# plugin module themselves when no agent can serve them.
.PHONY: cni-plugins cni-config cni-uninstall cni-agent-status cni-agent-stop test-cni bench-cni bench-cni-netlink bench-cni-attached

CNI_BIN_DIR ?= /opt/kubelet-py/cni/bin
# the wrappers' interpreter: auto = the fastest-starting python of the venv's version
CNI_PYTHON ?= auto
CNI_CONF_DIR ?= /etc/kubelet-py/cni/net.d
# the agent's socket (in a 0700 dir); CNI_AGENT_SOCKET= : executables that never use one
CNI_AGENT_SOCKET ?= /run/kubelet-py/cni-agent/agent.sock
# on: the first executable that finds no agent starts one (detached; idle timeout 120 s)
CNI_AGENT_AUTOSTART ?= on
KPY_CNI_PLUGINS := kpy-bridge kpy-host-local kpy-loopback

cni-plugins: venv ## install our CNI plugins into CNI_BIN_DIR (default /opt/kubelet-py/cni/bin)
	@$(PY) -m engine.networkdriver.plugins.install --bin-dir $(CNI_BIN_DIR) --python $(CNI_PYTHON) \
	  --agent-socket "$(CNI_AGENT_SOCKET)" \
	  $(if $(filter on,$(CNI_AGENT_AUTOSTART)),--agent-autostart,--no-agent-autostart) >/dev/null
	@tb=$$($(PY) hack/tools/build.py --print-bin | sed 's/^TOOLS_BIN=//'); \
	  if [ -x "$$tb/portmap" ]; then ln -sfn "$$tb/portmap" $(CNI_BIN_DIR)/portmap; \
	  else echo "note: no portmap in $$tb (make tools): hostPort needs it" >&2; fi
	@echo "CNI_BIN_DIR=$(CNI_BIN_DIR)"

cni-config: cni-plugins ## install the default conflist (our plugins) into CNI_CONF_DIR
	@install -d $(CNI_CONF_DIR)
	@install -m 0644 manifests/cni/10-kubelet-py.conflist $(CNI_CONF_DIR)/10-kubelet-py.conflist
	@echo "CNI_CONF_DIR=$(CNI_CONF_DIR)"

cni-uninstall: cni-agent-stop ## remove our plugin links and the default conflist
	@for p in $(KPY_CNI_PLUGINS); do rm -f $(CNI_BIN_DIR)/$$p; done
	@rm -f $(CNI_CONF_DIR)/10-kubelet-py.conflist

cni-agent-status: venv ## the running CNI agent's pid, requests served, CPU and RSS
	@$(PY) -m engine.networkdriver.plugins.agent --socket "$(CNI_AGENT_SOCKET)" --status

cni-agent-stop: venv ## stop the CNI agent (it finishes what runs; plugins then run themselves)
	@$(PY) -m engine.networkdriver.plugins.agent --socket "$(CNI_AGENT_SOCKET)" --stop

test-cni: venv ## the CNI tests: unit, integration (root) and cnitool e2e
	@hack/pytest.sh tests/unit/networkdriver tests/integration/networkdriver tests/e2e/test_cni_*.py $(PYTEST_ARGS)

bench-cni: venv ## ADD+DEL latency and 200 concurrent pods, ours vs the reference plugins
	@$(PY) -m bench.cni.run $(BENCH_ARGS)

bench-cni-netlink: venv ## one pod's netlink work and the import: pyroute2 vs our rtnetlink
	@$(PY) -m bench.cni.netlink_cost $(BENCH_ARGS)

bench-cni-attached: venv ## ADD+DEL per pod with 110 pods attached, ours vs the reference plugins
	@$(PY) -m bench.cni.attached $(BENCH_ARGS)
