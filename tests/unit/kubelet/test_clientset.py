from __future__ import annotations

from pathlib import Path

from kubelet_py.bootstrap.csr import new_key_pem
from kubelet_py.client import Credentials, new_clientset

from .test_cahash import CA_PEM


def test_clientset_from_credentials(tmp_path: Path) -> None:
    key = new_key_pem()
    creds = Credentials(server="https://127.0.0.1:6443", ca_pem=CA_PEM, cert_pem=CA_PEM,
                        key_pem=key)
    cs = new_clientset(creds, state_dir=tmp_path)
    conf = cs.api.configuration
    assert conf.host == "https://127.0.0.1:6443" and conf.verify_ssl
    assert Path(conf.key_file).read_bytes() == key
    assert (Path(conf.key_file).stat().st_mode & 0o777) == 0o600
    assert type(cs.core).__name__ == "CoreV1Api"
    assert type(cs.coordination).__name__ == "CoordinationV1Api"
    cs.close()
    assert not cs.pem_dir.exists()


def test_clientset_with_token() -> None:
    cs = new_clientset(Credentials(server="https://h:1", insecure_skip_tls_verify=True,
                                   token="abc"))
    try:
        assert cs.api.configuration.api_key == {"authorization": "Bearer abc"}
        assert not cs.api.configuration.verify_ssl
    finally:
        cs.close()
