# The local image registry (docker-registry on 127.0.0.1, plain HTTP and TLS+basic auth),
# filled with the test images our own code builds from busybox-static.
.PHONY: registry registry-down registry-status registry-large

REGISTRY_LARGE_MB ?= 128

registry: venv ## start the local registries and push the test images; prints REGISTRY=<host:port>
	@$(PY) -m tests.harness.registry up

registry-down: ## stop the local registries (storage in .registry/ is kept for a warm start)
	@$(PY) -m tests.harness.registry down

registry-status: ## is the local registry running?
	@$(PY) -m tests.harness.registry status

registry-large: registry ## push the >=100 MB benchmark image (REGISTRY_LARGE_MB) on demand
	@$(PY) -m tests.harness.registry push-large --size-mb $(REGISTRY_LARGE_MB)
