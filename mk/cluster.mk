# A real control plane on 127.0.0.1 (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) for development and the e2e tests: state, PKI and logs under
# $(CLUSTER_DIR); `.cluster/env` holds KUBECONFIG, SERVER, TOKEN, CA_CERT_HASH and the ports.
# Pin a port with CLUSTER_APISERVER_PORT (also _ETCD_, _ETCD_PEER_, _CONTROLLER_MANAGER_,
# _SCHEDULER_); otherwise free ports are chosen.
CLUSTER_DIR ?= $(CURDIR)/.cluster
export CLUSTER_DIR

.PHONY: cluster cluster-down cluster-status

cluster: venv ## start the local control plane (idempotent); prints .cluster/env and a join line
	@TOOLS_BIN="$${TOOLS_BIN:-$$($(PY) hack/tools/build.py --print-bin | sed 's/^TOOLS_BIN=//')}" \
	  $(PY) -m tests.harness.cluster up

cluster-down: ## stop the local control plane and remove its interface (always cleans up)
	@$(PY) -m tests.harness.cluster down

cluster-status: ## say whether the local control plane is running, stale or absent
	@$(PY) -m tests.harness.cluster status
