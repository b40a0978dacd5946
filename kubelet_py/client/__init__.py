"""The kubelet's API clients: raw-JSON asyncio REST + informers, typed ClientSet, dynamic."""
from __future__ import annotations

from kubelet_py.client.clientset import ClientSet, new_clientset
from kubelet_py.client.errors import (
    ApiError,
    ApiUnavailable,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    Unauthorized,
)
from kubelet_py.client.informer import Informer, Store
from kubelet_py.client.kubeconfig import Credentials, load_kubeconfig, render_kubeconfig
from kubelet_py.client.rest import RestClient

__all__ = [
    "ApiError", "ApiUnavailable", "ClientSet", "Conflict", "Credentials", "Forbidden", "Gone",
    "Informer", "NotFound", "RestClient", "Store", "Unauthorized", "load_kubeconfig",
    "new_clientset", "render_kubeconfig",
]
