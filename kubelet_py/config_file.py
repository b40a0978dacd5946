"""`--config`: a KubeletConfiguration file (kubelet.config.k8s.io/v1beta1).

The fields kubelet-py implements are mapped onto the flags they correspond to; a flag given
on the command line wins over the file, as upstream. Fields this kubelet does not implement
are reported (logged), never silently taken as honoured.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kubelet_py.errors import ConfigError
from kubelet_py.pods.userns_range import IDS_PER_POD, validate_ids_per_pod

log = logging.getLogger(__name__)
API_VERSION = "kubelet.config.k8s.io/v1beta1"


def _duration(value: Any) -> float:
    from kubelet_py.options import parse_duration

    return parse_duration(str(value))


def _dns(value: Any) -> str:
    if not isinstance(value, list):
        raise ValueError("clusterDNS must be a list of IPs")
    return ",".join(map(str, value))


def _user_namespaces(value: Any) -> int:
    """`userNamespaces: {idsPerPod: N}` -> N (validated as upstream; absent: the default)."""
    if value is None:
        return IDS_PER_POD
    if not isinstance(value, dict):
        raise ValueError("must be an object like {idsPerPod: 65536}")
    unknown = sorted(set(value) - {"idsPerPod"})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} (known: idsPerPod)")
    ids = value.get("idsPerPod")
    if ids is None:
        return IDS_PER_POD
    if not isinstance(ids, int) or isinstance(ids, bool):
        raise ValueError(f"idsPerPod must be an integer, not {ids!r}")
    return validate_ids_per_pod(ids)


FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "staticPodPath": ("pod_manifest_path", Path),
    "maxPods": ("max_pods", int),
    "clusterDNS": ("cluster_dns", _dns),
    "clusterDomain": ("cluster_domain", str),
    "address": ("address", str),
    "port": ("port", int),
    "healthzPort": ("healthz_port", int),
    "rotateCertificates": ("rotate_certificates", bool),
    "serverTLSBootstrap": ("rotate_server_certificates", bool),
    "runtimeRequestTimeout": ("runtime_request_timeout", _duration),
    "containerRuntimeEndpoint": ("container_runtime_endpoint", str),
    "imageServiceEndpoint": ("image_service_endpoint", str),
    "podLogsDir": ("pod_logs_dir", Path),
    "podCIDR": ("pod_cidr", str),
    "registerNode": ("register_node", bool),
    "userNamespaces": ("ids_per_pod", _user_namespaces),
}
IGNORED_QUIETLY = {"apiVersion", "kind"}


def apply_config_file(ns: argparse.Namespace, path: Path,
                      defaults: Callable[[str], Any]) -> list[str]:
    """Fill `ns` from the file where the flag kept its default; return ignored fields."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path} is not YAML: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != "KubeletConfiguration":
        raise ConfigError(f"--config {path}: not a KubeletConfiguration")
    if doc.get("apiVersion") != API_VERSION:
        raise ConfigError(f"--config {path}: apiVersion {doc.get('apiVersion')!r} is not "
                          f"{API_VERSION}")
    ignored = []
    for key, value in doc.items():
        if key in IGNORED_QUIETLY:
            continue
        if key not in FIELDS:
            ignored.append(key)
            continue
        attr, convert = FIELDS[key]
        try:
            converted = convert(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"--config {path}: {key}: {exc}") from exc
        if getattr(ns, attr) == defaults(attr):
            setattr(ns, attr, converted)
    if ignored:
        log.warning("--config %s: fields not implemented by kubelet-py, ignored: %s", path,
                    ", ".join(sorted(ignored)))
    return ignored
