# The kubeletpy.engine.v1 stubs (enginectl's extension service), generated from
# cri/api/engine.proto like `make proto` does for runtime.v1.
ENGINE_PROTO_STUBS := engine_pb2.py engine_pb2.pyi engine_pb2_grpc.py

.PHONY: proto-engine proto-engine-check

proto-engine: ## regenerate cri/api/engine_pb2*.py from cri/api/engine.proto (grpcio-tools)
	@mkdir -p $(PROTO_OUT)
	@$(PY) -m grpc_tools.protoc -I $(PROTO_SRC_DIR) \
	  --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) \
	  $(PROTO_SRC_DIR)/engine.proto
	@sed -i -E 's/^import engine_pb2 as engine__pb2$$/from cri.api import engine_pb2 as engine__pb2/' \
	  $(PROTO_OUT)/engine_pb2_grpc.py
	@grep -q '^from cri.api import engine_pb2 as engine__pb2$$' $(PROTO_OUT)/engine_pb2_grpc.py || \
	  { echo "proto-engine: the generated import in engine_pb2_grpc.py was not rewritten" >&2; exit 1; }

proto-engine-check: ## fail when the committed engine.v1 stubs differ from a fresh `make proto-engine`
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(MAKE) --no-print-directory proto-engine PROTO_OUT="$$tmp" && \
	  for f in $(ENGINE_PROTO_STUBS); do \
	    cmp -s "$$tmp/$$f" "$(PROTO_SRC_DIR)/$$f" || \
	      { echo "proto-engine-check: $(PROTO_SRC_DIR)/$$f is stale: run \`make proto-engine\`" >&2; exit 1; }; \
	  done && echo "proto-engine-check: stubs up to date"
