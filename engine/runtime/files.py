"""The files a sandbox provides to its containers: hostname, hosts, resolv.conf."""
from __future__ import annotations

from pathlib import Path

from engine.execdriver.codec import write_atomic
from engine.runtime.spec import DNSConfig


def resolv_conf(dns: DNSConfig | None, *, host_file: Path = Path("/etc/resolv.conf")) -> str:
    if dns is None:
        try:
            return host_file.read_text()
        except FileNotFoundError:
            return ""
    lines = [f"nameserver {s}" for s in dns.servers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n" if lines else ""


def hosts(hostname: str, ips: tuple[str, ...]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "fe00::0\tip6-mcastprefix",
             "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
    lines += [f"{ip}\t{hostname}" for ip in ips if hostname]
    return "\n".join(lines) + "\n"


def write_sandbox_files(d: Path, *, hostname: str, ips: tuple[str, ...],
                        dns: DNSConfig | None) -> None:
    # world-readable: they are bind-mounted into containers whose user need not be root
    write_atomic(d / "hostname", hostname + "\n" if hostname else "", mode=0o644)
    write_atomic(d / "hosts", hosts(hostname, ips), mode=0o644)
    write_atomic(d / "resolv.conf", resolv_conf(dns), mode=0o644)
