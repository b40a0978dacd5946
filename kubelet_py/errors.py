"""The kubelet's one exception tree."""
from __future__ import annotations


class KubeletError(Exception):
    """Base of every error kubelet-py raises on purpose."""


class ConfigError(KubeletError):
    """Flags, kubeconfig or configuration files are unusable."""


class BootstrapError(KubeletError):
    """Joining the cluster or obtaining credentials failed."""


class RuntimeUnavailable(KubeletError):
    """The CRI runtime cannot be reached or answered with an error."""
