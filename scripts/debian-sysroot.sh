#!/usr/bin/env bash
# A Debian armhf root holding Debian's own `nodejs` and its dependency closure (libnode, libuv, libssl,
# libicu, c-ares, brotli, nghttp2, zlib, libc6, libstdc++ ...), fetched from Debian's archive, for
# running the armhf .deb's program under `qemu-arm -L ROOT` on the runtime it ships with
# (test/packaging-armhf.test.ts, docs/packaging.md). `make system-deps` runs it.
#
#   bash scripts/debian-sysroot.sh [DIR]      (default: .cache/debian-sysroot/$SUITE-armhf)
#
# apt runs with a private configuration, state and cache under DIR (the host's dpkg, its architectures
# and its sources are not touched; no root needed): the signed indexes of the suite and its security
# suite, then `apt-get install --download-only` against an empty dpkg status, which resolves the whole
# closure. Each .deb is unpacked with `dpkg-deb -x`, and a minimal dpkg database (status, *.list) is
# written so the program can tell which package its node comes from, as it does on a Pi.
# Safe to run again: nothing is unpacked when the resolved versions equal those in DIR/packages.
# DEVSTREAMS_DEBIAN_SUITE (bookworm) and DEVSTREAMS_DEBIAN_MIRROR (http://deb.debian.org) choose others.
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE="${DEVSTREAMS_DEBIAN_SUITE:-bookworm}"
MIRROR="${DEVSTREAMS_DEBIAN_MIRROR:-http://deb.debian.org}"
ARCH=armhf
# Not under node_modules/: `npm ci` (which `make test` may run after this) deletes that whole tree.
DIR="$(realpath -m "${1:-.cache/debian-sysroot/$SUITE-$ARCH}")"
PACKAGES=(nodejs)
# Without their dependencies (base-files pre-depends on awk and so on 50 more): /etc/os-release and
# /etc/debian_version, which say which Debian release the root is.
EXTRA=(base-files)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || { echo "debian-sysroot: $KEYRING is missing (package debian-archive-keyring)" >&2; exit 69; }

APT="$DIR/apt"
mkdir -p "$APT/etc/apt.conf.d" "$APT/etc/preferences.d" "$APT/lists/partial" "$APT/archives/partial" "$APT/cache"
: > "$APT/status"
cat > "$APT/etc/sources.list" <<SOURCES
deb [arch=$ARCH signed-by=$KEYRING] $MIRROR/debian $SUITE main
deb [arch=$ARCH signed-by=$KEYRING] $MIRROR/debian $SUITE-updates main
deb [arch=$ARCH signed-by=$KEYRING] $MIRROR/debian-security $SUITE-security main
SOURCES
apt_opts=(
	-o "Dir::Etc=$APT/etc" -o "Dir::Etc::SourceList=$APT/etc/sources.list" -o Dir::Etc::SourceParts=/nonexistent
	-o "Dir::Etc::Parts=$APT/etc/apt.conf.d" -o "Dir::Etc::Preferences=$APT/etc/preferences"
	-o "Dir::Etc::PreferencesParts=$APT/etc/preferences.d"
	-o "Dir::State=$APT" -o "Dir::State::Lists=$APT/lists" -o "Dir::State::status=$APT/status"
	-o "Dir::Cache=$APT/cache" -o "Dir::Cache::archives=$APT/archives"
	-o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH" -o Debug::NoLocking=1
	-o "APT::Sandbox::User=$(id -un)" -o APT::Install-Recommends=0 -o Acquire::Retries=3
)

# An index that fails verification (a mirror mid-sync serves a file that does not match the signed
# Release) is ignored by apt, which then resolves from the other suites: say so, and which versions
# that gave, rather than fail the whole install step.
update_log="$APT/update.log"
if ! apt-get "${apt_opts[@]}" update >"$update_log" 2>&1; then
	echo "debian-sysroot: warning: apt-get update reported errors; the packages come from the indexes that verified:" >&2
	grep -E '^(E|W|Err):' "$update_log" | sed 's/^/  /' >&2 || true
fi
apt-get "${apt_opts[@]}" install --download-only -y -qq "${PACKAGES[@]}" >"$APT/download.log" 2>&1 || {
	cat "$APT/download.log" >&2
	echo "debian-sysroot: could not download ${PACKAGES[*]} for $ARCH from $MIRROR ($SUITE)" >&2
	exit 69
}

(cd "$APT/archives" && apt-get "${apt_opts[@]}" download -qq "${EXTRA[@]}")

# What apt resolved ("Inst nodejs (18.20.4+dfsg-1~deb12u2 Debian:12.12/oldstable [armhf])" lines),
# as the files apt names them (an epoch's ':' is '%3a'), and "package version" sorted: the manifest
# the root is checked against.
debs=()
while read -r pkg ver arch; do
	debs+=("${pkg}_${ver//:/%3a}_${arch}.deb")
done < <(apt-get "${apt_opts[@]}" install -s -qq "${PACKAGES[@]}" | sed -nE 's/^Inst ([^ ]+) \(([^ ]+) .*\[([a-z0-9]+)\]\)( \[.*\])?$/\1 \2 \3/p')
for p in "${EXTRA[@]}"; do debs+=("$(cd "$APT/archives" && ls -t "${p}"_*_"$ARCH".deb | head -1)"); done
wanted="$(for d in "${debs[@]}"; do dpkg-deb --show --showformat='${Package} ${Version}\n' "$APT/archives/$d"; done | LC_ALL=C sort)"
if [ -d "$DIR/root" ] && [ -f "$DIR/packages" ] && [ "$(cat "$DIR/packages")" = "$wanted" ]; then
	exit 0
fi

root="$(mktemp -d "$DIR/.root-XXXXXX")"
trap 'rm -rf "$root"' EXIT
install -d "$root/var/lib/dpkg/info"
: > "$root/var/lib/dpkg/status"
for d in "${debs[@]}"; do
	deb="$APT/archives/$d"
	pkg="$(dpkg-deb -f "$deb" Package)"
	dpkg-deb -x "$deb" "$root"
	# dpkg's own records, so `dpkg -s nodejs` (and devstreams --version) inside the root reads as on a device.
	{ dpkg-deb -f "$deb" | sed '1a Status: install ok installed'; echo; } >> "$root/var/lib/dpkg/status"
	multi="$(dpkg-deb -f "$deb" Multi-Arch)"
	list="$pkg"; [ "$multi" = same ] && list="$pkg:$ARCH"
	dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's|^\./|/|' -e 's|/$||' -e 's|^$|/.|' > "$root/var/lib/dpkg/info/$list.list"
done
rm -rf "$DIR/root"
mv "$root" "$DIR/root"
trap - EXIT
printf '%s\n' "$wanted" > "$DIR/packages"
echo "debian-sysroot: $DIR/root: $(grep -E '^nodejs ' "$DIR/packages"), ${#debs[@]} packages, $(du -sh "$DIR/root" | cut -f1) (apt state and .debs beside it: $(du -sh "$APT" | cut -f1))"
