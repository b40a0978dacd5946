# The runtime.v1 Python stubs, generated from our own cri/api/runtime.proto.
# `make proto` rewrites them in place; `make proto-check` fails when they are stale.
PROTO_SRC_DIR := cri/api
PROTO_OUT ?= cri/api
PROTO_STUBS := runtime_pb2.py runtime_pb2.pyi runtime_pb2_grpc.py

.PHONY: proto proto-check

proto: ## regenerate cri/api/runtime_pb2*.py from cri/api/runtime.proto (grpcio-tools)
	@mkdir -p $(PROTO_OUT)
	@$(PY) -m grpc_tools.protoc -I $(PROTO_SRC_DIR) \
	  --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) --grpc_python_out=$(PROTO_OUT) \
	  $(PROTO_SRC_DIR)/runtime.proto
	@sed -i -E 's/^import runtime_pb2 as runtime__pb2$$/from cri.api import runtime_pb2 as runtime__pb2/' \
	  $(PROTO_OUT)/runtime_pb2_grpc.py
	@grep -q '^from cri.api import runtime_pb2 as runtime__pb2$$' $(PROTO_OUT)/runtime_pb2_grpc.py || \
	  { echo "proto: the generated import in runtime_pb2_grpc.py was not rewritten" >&2; exit 1; }

proto-check: ## fail when the committed runtime.v1 stubs differ from a fresh `make proto`
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(MAKE) --no-print-directory proto PROTO_OUT="$$tmp" && \
	  for f in $(PROTO_STUBS); do \
	    cmp -s "$$tmp/$$f" "$(PROTO_SRC_DIR)/$$f" || \
	      { echo "proto-check: $(PROTO_SRC_DIR)/$$f is stale: run \`make proto\`" >&2; exit 1; }; \
	  done && echo "proto-check: stubs up to date"
