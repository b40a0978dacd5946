# The image Graph, registry client and graph drivers: tests and the pull benchmark.
.PHONY: test-graph bench-pull

test-graph: venv ## unit + integration tests of engine/graph, registry, graphdriver, archive
	@hack/pytest.sh tests/unit/graph tests/unit/registry tests/unit/graphdriver \
	  tests/integration/graph tests/integration/graphdriver $(PYTEST_ARGS)

bench-pull: venv ## pull+unpack MiB/s vs skopeo+umoci and containerd; rootfs mount p50 (root)
	@$(PY) -m bench.pull.run $(BENCH_ARGS)
