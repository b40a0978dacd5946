"""Install our plugins into a CNI bin dir as fast-starting executables.

A CNI runtime execs ``<bin dir>/<type>``. The venv's console scripts work there too, but
the wrappers written here start faster: ``python -IS`` skips ``site`` (and the editable
install's import hook) and puts the source tree and the venv's site-packages on sys.path.
"""
from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from pathlib import Path

PLUGINS = {
    "kpy-bridge": "engine.networkdriver.plugins.bridge",
    "kpy-host-local": "engine.networkdriver.plugins.hostlocal",
    "kpy-loopback": "engine.networkdriver.plugins.loopback",
}


def wrapper(module: str) -> str:
    source_root = Path(__file__).resolve().parents[3]
    paths = [str(source_root), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return (f"#!{sys.executable} -IS\n"
            "# A kubelet-py CNI plugin, written by `make cni-plugins`.\n"
            "import sys\n"
            f"sys.path[:0] = {list(dict.fromkeys(paths))!r}\n"
            f"from {module} import main\n"
            "main()\n")


def install(bin_dir: Path) -> list[Path]:
    bin_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name, module in PLUGINS.items():
        target = bin_dir / name
        tmp = bin_dir / f".{name}.tmp"
        tmp.write_text(wrapper(module))
        tmp.chmod(0o755)
        os.replace(tmp, target)
        done.append(target)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bin-dir", type=Path, required=True)
    args = parser.parse_args()
    for path in install(args.bin_dir):
        print(path)


if __name__ == "__main__":
    main()
