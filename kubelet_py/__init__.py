"""kubelet-py: a Kubernetes kubelet that drives any CRI runtime over gRPC."""

__version__ = "0.1.0"
