"""The kubelet's HTTPS API on --port (10250): container logs, pods, healthz; authn + authz."""
