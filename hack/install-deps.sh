#!/usr/bin/env bash
# Install the Debian packages kubelet-py and its tests use. Idempotent and quiet when done.
set -euo pipefail
PKGS=(docker-registry busybox-static runc crun skopeo umoci iptables nftables tmux iproute2
      conntrack socat jq hyperfine sqlite3 ca-certificates openssl kmod util-linux procps
      e2fsprogs nghttp2-client)
# Debian's dynamically linked busybox is only downloaded, never installed (it conflicts with
# busybox-static): critest's image gets its PATH-searching /bin/sh (tests/harness/images_shell.py).
DEBS="${HOME}/.cache/kubelet-py/debs"
if ! ls "$DEBS"/busybox_*.deb >/dev/null 2>&1; then
  mkdir -p "$DEBS"
  (cd "$DEBS" && { apt-get download -qq busybox >/dev/null 2>&1 ||
     { apt-get update -qq && apt-get download -qq busybox; }; }) ||
    { echo "make deps: could not download Debian's busybox .deb into $DEBS" >&2; exit 1; }
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "make deps: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "make deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq || ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/kubelet-py-apt.log 2>&1; then
  echo "make deps: apt-get could not install ${missing[*]}; see /tmp/kubelet-py-apt.log" >&2
  exit 1
fi
# The Debian docker-registry package starts a system registry on :5000; we run our own.
systemctl disable --now docker-registry >/dev/null 2>&1 || true
