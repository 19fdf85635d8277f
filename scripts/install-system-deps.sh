#!/usr/bin/env bash
# Installs the Debian packages that the tests and the demo talk to for real: OpenSSH's sshd and ssh,
# mosquitto, tmux (terminal tests), tinyproxy (HTTP CONNECT proxy tests), socat and iperf3 (benchmarks),
# chromium (the hub's web console).
# Safe to run again.
set -euo pipefail
PKGS=(openssh-server openssh-client mosquitto mosquitto-clients tmux socat iperf3 procps tinyproxy
  # Single executables and .debs (docs/packaging.md): cross compilers for node-pty's addon, qemu-user
  # to run the ARM Node that makes each SEA blob and the ARM binaries in tests, dpkg-deb, systemd-analyze.
  g++ g++-aarch64-linux-gnu g++-arm-linux-gnueabihf binutils qemu-user dpkg-dev systemd xz-utils lintian
  # sd_notify tests: a small python3 helper listens on the datagram socket.
  python3
  # Proxy test with the hub reachable only through tinyproxy: unshare -n (util-linux) and `ip` for lo.
  util-linux iproute2
  # Fleet mode (docs/scaling.md): a three-node NATS cluster with its MQTT listener (mosquitto is above).
  nats-server
  # The hub's web console (docs/console.md) is tested in a real browser, driven by playwright-core.
  chromium
  # rsync over ssh through the ProxyCommand mode (docs/ssh.md).
  rsync
  # The armhf root with Debian's own nodejs (scripts/debian-sysroot.sh, below) checks Debian's signatures.
  debian-archive-keyring)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts services on install where it can; the tests run their own instances on free ports.
fi
# Debian's armhf nodejs and its libraries in .cache/debian-sysroot/ (not installed on this machine:
# apt runs with a private state there), the runtime the armhf .deb runs on, for the tests under
# qemu-arm: bookworm's (Node 18) and trixie's (Node 20). About 5 + 20 s and 135 + 166 MB here the
# first time, 3 s each after; nothing is unpacked again while Debian's versions are unchanged.
for suite in bookworm trixie; do
  DEVSTREAMS_DEBIAN_SUITE=$suite bash "$(dirname "$0")/debian-sysroot.sh"
done
