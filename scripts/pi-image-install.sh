#!/usr/bin/env bash
# For image builders: installs the devstreams .deb (the agent, its systemd unit and the first-boot
# provisioning hook) into a Raspberry Pi OS root filesystem mounted at a directory, from an x86-64
# machine, without qemu or binfmt: dpkg runs the package's maintainer scripts on the host with
# DPKG_ROOT set (--force-script-chrootless), and they are written for that (docs/packaging.md).
#
#   scripts/pi-image-install.sh [--deb FILE] [--config agent.yaml] ROOTFS
#
# ROOTFS is the image's root partition, mounted (e.g. losetup -P, mount /dev/loop0p2 /mnt/pi).
# The .deb defaults to dist/devstreams_<version>_<arch>.deb for the image's architecture (`make deb`).
# --config installs an agent.yaml for every card flashed from this image (services, log level; the
# connection string still comes per card, from devstreams-connection-string.txt on the boot partition).
set -euo pipefail

usage() {
	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

deb="" config="" rootfs=""
while [ $# -gt 0 ]; do
	case "$1" in
	--deb) deb="${2:?--deb needs a file}"; shift 2 ;;
	--config) config="${2:?--config needs a file}"; shift 2 ;;
	-h | --help) usage ;;
	-*) echo "pi-image-install: unknown option $1" >&2; usage ;;
	*) [ -z "$rootfs" ] || usage; rootfs="$1"; shift ;;
	esac
done
[ -n "$rootfs" ] || usage
rootfs="$(cd "$rootfs" && pwd)"
status="$rootfs/var/lib/dpkg/status"
if [ ! -f "$status" ] || [ ! -f "$rootfs/etc/passwd" ]; then
	echo "pi-image-install: $rootfs does not look like a Debian root filesystem (no var/lib/dpkg/status or etc/passwd)" >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "pi-image-install: run as root (files in the image must belong to root)" >&2
	exit 1
fi

# The image's architecture is that of its own dpkg package.
arch="$(awk '/^Package: /{p=$2} /^Architecture: /{if (p=="dpkg") {print $2; exit}}' "$status")"
case "$arch" in
arm64 | armhf | amd64) ;;
"") echo "pi-image-install: cannot tell the image's architecture (no dpkg entry in $status)" >&2; exit 1 ;;
*) echo "pi-image-install: devstreams is built for arm64, armhf and amd64, not $arch (armel: Pi 1/Zero are not supported)" >&2; exit 1 ;;
esac

if [ -z "$deb" ]; then
	here="$(cd "$(dirname "$0")/.." && pwd)"
	version="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$here/package.json" | head -1)"
	deb="$here/dist/devstreams_${version}_${arch}.deb"
fi
[ -f "$deb" ] || { echo "pi-image-install: $deb not found (make deb builds it)" >&2; exit 1; }
deb_arch="$(dpkg-deb -f "$deb" Architecture)"
[ "$deb_arch" = "$arch" ] || { echo "pi-image-install: $deb is for $deb_arch, the image is $arch" >&2; exit 1; }

# --force-architecture: the host's dpkg is amd64; the image's own packages satisfy the dependencies.
# --force-confold: keep an agent.yaml the image builder changed (no prompt on reinstall).
dpkg --root="$rootfs" --force-script-chrootless --force-architecture --force-confdef --force-confold -i "$deb"

if [ -n "$config" ]; then
	gid="$(awk -F: '$1 == "devstreams" { print $3 }' "$rootfs/etc/group")"
	install -m 0640 -o 0 -g "$gid" "$config" "$rootfs/etc/devstreams/agent.yaml"
fi

echo "devstreams $(dpkg-deb -f "$deb" Version) ($arch) installed into $rootfs."
echo "Per card: put devstreams-connection-string.txt (or a whole devstreams.yaml) on the boot partition;"
echo "the first boot installs it into /etc/devstreams and removes it from there."
