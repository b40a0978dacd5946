# CRI server figures: unary RPC throughput and latency with 110 pods, engined vs containerd
# (load from h2load, Debian's nghttp2-client). engined serves with its own HTTP/2 server
# (cri.h2); BENCH_CRI_ARGS='--grpc-servers kpy,grpcio' adds an engined on grpcio's server
# to the same run, for the before/after.
.PHONY: bench-cri

BENCH_CRI_ARGS ?=

bench-cri: venv ## unary CRI RPCs (ListContainers, ContainerStatus) under h2load, 110 pods, vs containerd (root)
	@$(PY) -m bench.cri.run $(BENCH_CRI_ARGS)

.PHONY: bench-cri-lifecycle

bench-cri-lifecycle: venv ## pod run/create/start + stop/remove through the CRI, engined vs containerd (root)
	@$(PY) -m bench.cri.lifecycle -n 20
