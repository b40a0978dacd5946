# CRI server figures: unary RPC throughput and latency with 110 pods, engined vs containerd
# (load from h2load, Debian's nghttp2-client).
.PHONY: bench-cri

BENCH_CRI_ARGS ?=

bench-cri: venv ## unary CRI RPCs (ListContainers, ContainerStatus) under h2load, 110 pods, vs containerd (root)
	@$(PY) -m bench.cri.run $(BENCH_CRI_ARGS)

.PHONY: bench-cri-lifecycle

bench-cri-lifecycle: venv ## pod run/create/start + stop/remove through the CRI, engined vs containerd (root)
	@$(PY) -m bench.cri.lifecycle -n 20
