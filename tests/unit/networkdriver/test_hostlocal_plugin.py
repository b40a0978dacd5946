"""kpy-host-local through its in-process entry point (no root: IPAM touches only files)."""
from __future__ import annotations

import json
from pathlib import Path

from engine.networkdriver.plugins import hostlocal, spec


def run(tmp_path: Path, command: str, cid: str = "c1", ifname: str = "eth0",
        **conf_extra: object) -> tuple[int, dict | None]:
    conf = {"cniVersion": "1.1.0", "name": "net1", "type": "kpy-host-local",
            "ipam": {"type": "kpy-host-local", "dataDir": str(tmp_path),
                     "ranges": [[{"subnet": "10.7.0.0/29"}], [{"subnet": "fd07::/125"}]],
                     "routes": [{"dst": "0.0.0.0/0"}]}}
    conf.update(conf_extra)
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": "/run/netns/none",
           "CNI_IFNAME": ifname, "CNI_PATH": "/nonexistent"}
    code, out = hostlocal.run(env, json.dumps(conf).encode())
    return code, (json.loads(out) if out else None)


def test_add_check_del_dual_stack(tmp_path: Path) -> None:
    code, result = run(tmp_path, "ADD")
    assert code == 0 and result is not None
    assert result["ips"] == [{"address": "10.7.0.2/29", "gateway": "10.7.0.1"},
                             {"address": "fd07::2/125", "gateway": "fd07::1"}]
    assert result["routes"] == [{"dst": "0.0.0.0/0"}]
    assert run(tmp_path, "CHECK") == (0, None)
    assert run(tmp_path, "DEL") == (0, None)
    code, err = run(tmp_path, "CHECK")
    assert code == 1 and err is not None and err["code"] == spec.ERR_UNKNOWN_CONTAINER
    assert run(tmp_path, "DEL") == (0, None)  # idempotent


def test_container_id_reused_is_refused_and_keeps_the_first_address(tmp_path: Path) -> None:
    run(tmp_path, "ADD")
    code, err = run(tmp_path, "ADD")
    assert code == 1 and err is not None and err["code"] == spec.ERR_DUPLICATE_ALLOCATION
    assert (tmp_path / "net1" / "10.7.0.2").read_bytes() == b"c1\r\neth0"
    assert not (tmp_path / "net1" / "10.7.0.3").exists()


def test_exhausted_range_rolls_back_the_other_family(tmp_path: Path) -> None:
    for n in range(5):  # the /29 holds .2-.6
        assert run(tmp_path, "ADD", cid=f"c{n}")[0] == 0
    code, err = run(tmp_path, "ADD", cid="late")
    assert code == 1 and err is not None and err["code"] == spec.ERR_RANGE_EXHAUSTED
    owners = [p.read_bytes() for p in (tmp_path / "net1").iterdir() if ":" in p.name]
    assert b"late\r\neth0" not in owners


def test_gc_releases_what_no_valid_attachment_holds(tmp_path: Path) -> None:
    run(tmp_path, "ADD", cid="a")
    run(tmp_path, "ADD", cid="b")
    code, _ = run(tmp_path, "GC", **{"cni.dev/valid-attachments": [
        {"containerID": "a", "ifname": "eth0"}]})
    assert code == 0
    held = sorted(p.name for p in (tmp_path / "net1").iterdir())
    assert held == ["10.7.0.2", "fd07::2", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]


def test_status_and_old_result_version(tmp_path: Path) -> None:
    assert run(tmp_path, "STATUS") == (0, None)
    code, result = run(tmp_path, "ADD", cniVersion="0.4.0")
    assert code == 0 and result is not None
    assert result["cniVersion"] == "0.4.0"
    assert [ip["version"] for ip in result["ips"]] == ["4", "6"]


def test_requested_ip_via_cni_args(tmp_path: Path) -> None:
    conf = {"cniVersion": "1.0.0", "name": "net1", "type": "x",
            "ipam": {"type": "x", "dataDir": str(tmp_path), "subnet": "10.7.0.0/24"}}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c9", "CNI_NETNS": "/x",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/x", "CNI_ARGS": "IgnoreUnknown=1;IP=10.7.0.77"}
    code, out = hostlocal.run(env, json.dumps(conf).encode())
    assert code == 0
    assert json.loads(out)["ips"][0]["address"] == "10.7.0.77/24"


def test_lock_timeout_from_the_environment_answers_try_again_later(tmp_path: Path) -> None:
    import fcntl
    import os

    (tmp_path / "net1").mkdir()
    fd = os.open(tmp_path / "net1" / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        conf = {"cniVersion": "1.0.0", "name": "net1", "type": "x",
                "ipam": {"type": "x", "dataDir": str(tmp_path), "subnet": "10.7.0.0/24"}}
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/x",
               "CNI_IFNAME": "eth0", "CNI_PATH": "/x", "KPY_IPAM_LOCK_TIMEOUT": "0.2"}
        code, out = hostlocal.run(env, json.dumps(conf).encode())
        assert code == 1 and json.loads(out)["code"] == spec.ERR_TRY_AGAIN_LATER
        code, out = hostlocal.run({**env, "KPY_IPAM_LOCK_TIMEOUT": "soon"},
                                  json.dumps(conf).encode())
        assert code == 1 and json.loads(out)["code"] == spec.ERR_INVALID_ENV
    finally:
        os.close(fd)
