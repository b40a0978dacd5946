# Our CNI plugins (kpy-bridge, kpy-host-local, kpy-loopback) and the default conflist.
# CNI runtimes look a plugin `type` up as a file in their bin dirs: we write small
# executables there that run our plugin modules on the venv's python (fast start).
.PHONY: cni-plugins cni-config cni-uninstall test-cni bench-cni

CNI_BIN_DIR ?= /opt/kubelet-py/cni/bin
# the wrappers' interpreter: auto = the fastest-starting python of the venv's version
CNI_PYTHON ?= auto
CNI_CONF_DIR ?= /etc/kubelet-py/cni/net.d
KPY_CNI_PLUGINS := kpy-bridge kpy-host-local kpy-loopback

cni-plugins: venv ## install our CNI plugins into CNI_BIN_DIR (default /opt/kubelet-py/cni/bin)
	@$(PY) -m engine.networkdriver.plugins.install --bin-dir $(CNI_BIN_DIR) --python $(CNI_PYTHON) >/dev/null
	@tb=$$($(PY) hack/tools/build.py --print-bin | sed 's/^TOOLS_BIN=//'); \
	  if [ -x "$$tb/portmap" ]; then ln -sfn "$$tb/portmap" $(CNI_BIN_DIR)/portmap; \
	  else echo "note: no portmap in $$tb (make tools): hostPort needs it" >&2; fi
	@echo "CNI_BIN_DIR=$(CNI_BIN_DIR)"

cni-config: cni-plugins ## install the default conflist (our plugins) into CNI_CONF_DIR
	@install -d $(CNI_CONF_DIR)
	@install -m 0644 manifests/cni/10-kubelet-py.conflist $(CNI_CONF_DIR)/10-kubelet-py.conflist
	@echo "CNI_CONF_DIR=$(CNI_CONF_DIR)"

cni-uninstall: ## remove our plugin links and the default conflist
	@for p in $(KPY_CNI_PLUGINS); do rm -f $(CNI_BIN_DIR)/$$p; done
	@rm -f $(CNI_CONF_DIR)/10-kubelet-py.conflist

test-cni: venv ## the CNI tests: unit, integration (root) and cnitool e2e
	@hack/pytest.sh tests/unit/networkdriver tests/integration/networkdriver tests/e2e/test_cni_*.py $(PYTEST_ARGS)

bench-cni: venv ## ADD+DEL latency and 200 concurrent pods, ours vs the reference plugins
	@$(PY) -m bench.cni.run $(BENCH_ARGS)
