# The engine runtime: sandboxes, containers, exec drivers (native, runc, crun), monitors.
.PHONY: test-runtime bench-runtime

test-runtime: venv ## runtime + execdriver unit and integration tests (integration needs root)
	@$(PY) -m pytest tests/unit/runtime tests/unit/execdriver tests/unit/cgroups \
	  tests/integration/runtime tests/integration/execdriver tests/integration/cgroups -q

bench-runtime: venv ## /bin/true lifecycle, native vs crun vs runc (needs root)
	@$(PY) -m bench.runtime.run -n 30
	@$(PY) -m bench.runtime.memory -n 20
