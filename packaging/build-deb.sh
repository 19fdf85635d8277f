#!/usr/bin/env bash
# `make deb`: dist/devstreams_<version>_<arch>.deb for arm64, armhf and amd64 from the single
# executables (`make binary`). Layout, maintainer scripts and why: docs/packaging.md.
#
#   bash packaging/build-deb.sh [arm64|armhf|amd64 ...]      (default: all three)
#
# Reproducible: owners are root:root, modes are set here, every mtime is SOURCE_DATE_EPOCH (the
# last commit's time unless set), and dpkg-deb honours SOURCE_DATE_EPOCH for the archive members.
# DEVSTREAMS_DEB_COMPRESSION=gzip trades size for speed (tests); the default is xz.
# DEVSTREAMS_DEB_OUT=DIR writes the packages (and the staging trees) there instead of dist/.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="$(node -p 'require("./package.json").version')"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
COMPRESSION="${DEVSTREAMS_DEB_COMPRESSION:-xz}"
OUT="${DEVSTREAMS_DEB_OUT:-dist}"
UNIT=config/devstreams-agent.service
[ -f "$UNIT" ] || { echo "build-deb: $UNIT is missing" >&2; exit 1; }

binary_arch() {
	case "$1" in
	arm64) echo arm64 ;;
	armhf) echo armv7 ;;
	amd64) echo x64 ;;
	*) echo "build-deb: unknown architecture $1 (arm64, armhf, amd64)" >&2; exit 2 ;;
	esac
}

# armhf runs the CLI bundle on the system's nodejs (Debian's: bookworm 18.20.4, trixie 20.19.2, both
# patched by Debian security), because no maintained armv7 Node can be embedded (the newest on the
# npm registry, 20.11.0, is end of life). The other architectures carry their single executable (Node 24).
SYSTEM_NODE_ARCHES=" armhf "
SYSTEM_NODE_DEPENDS="nodejs (>= 18.20)"

build_one() {
	local arch="$1" bin root deb depends started=$SECONDS
	root="$OUT/.deb-work/$arch"
	deb="$OUT/devstreams_${VERSION}_${arch}.deb"
	rm -rf "$root"
	install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/devstreams" \
		"$root/usr/share/doc/devstreams" "$root/usr/share/man/man1"
	if [[ "$SYSTEM_NODE_ARCHES" == *" $arch "* ]]; then
		bin="dist/devstreams-linux-$(binary_arch "$arch").cjs"
		[ -f "$bin" ] || { echo "build-deb: $bin is missing: run make binary" >&2; exit 1; }
		install -d -m 0755 "$root/usr/lib/devstreams"
		install -m 0644 "$bin" "$root/usr/lib/devstreams/devstreams.cjs"
		install -m 0755 packaging/devstreams-system-node "$root/usr/bin/devstreams"
	else
		bin="dist/devstreams-linux-$(binary_arch "$arch")"
		[ -x "$bin" ] || { echo "build-deb: $bin is missing: run make binary" >&2; exit 1; }
		install -m 0755 "$bin" "$root/usr/bin/devstreams"
	fi
	# The unit names the binary where a hand install puts it; the package puts it in /usr/bin.
	sed 's|/usr/local/bin/devstreams|/usr/bin/devstreams|g' "$UNIT" > "$root/lib/systemd/system/devstreams-agent.service"
	install -m 0644 packaging/devstreams-firstboot.service "$root/lib/systemd/system/"
	install -d -m 0755 "$root/lib/systemd/system/devstreams-agent.service.d"
	install -m 0644 packaging/devstreams-agent-provisioned.conf "$root/lib/systemd/system/devstreams-agent.service.d/provisioned.conf"
	chmod 0644 "$root/lib/systemd/system/devstreams-agent.service"
	# Group-readable only; postinst gives it to the devstreams group (which does not exist yet here).
	install -m 0640 packaging/agent.yaml "$root/etc/devstreams/agent.yaml"
	install -m 0644 packaging/debian/copyright "$root/usr/share/doc/devstreams/copyright"
	if [ -f config/devstreams-agent-shell.conf ]; then
		# Opt-in drop-in for devices that offer a shell (docs/shell.md): shipped as an example, not active.
		install -d -m 0755 "$root/usr/share/doc/devstreams/examples"
		install -m 0644 config/devstreams-agent-shell.conf "$root/usr/share/doc/devstreams/examples/"
	fi
	install -d -m 0755 "$root/usr/share/lintian/overrides"
	install -m 0644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/devstreams"
	printf 'devstreams (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- devstreams maintainers <maintainers@devstreams.invalid>  %s\n' \
		"$VERSION" "$VERSION" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")" | gzip -9n > "$root/usr/share/doc/devstreams/changelog.gz"
	gzip -9n < packaging/devstreams.1 > "$root/usr/share/man/man1/devstreams.1.gz"
	chmod 0644 "$root/usr/share/doc/devstreams/changelog.gz" "$root/usr/share/man/man1/devstreams.1.gz"
	install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
	echo /etc/devstreams/agent.yaml > "$root/DEBIAN/conffiles"
	chmod 0644 "$root/DEBIAN/conffiles"

	# Node's official builds (and node-pty's addon) need glibc 2.28 and libstdc++; the system nodejs
	# brings its own dependencies.
	depends="libc6 (>= 2.28), libstdc++6, adduser, passwd"
	[[ "$SYSTEM_NODE_ARCHES" == *" $arch "* ]] && depends="$depends, $SYSTEM_NODE_DEPENDS"
	cat > "$root/DEBIAN/control" <<CONTROL
Package: devstreams
Version: $VERSION
Architecture: $arch
Maintainer: devstreams maintainers <maintainers@devstreams.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Recommends: systemd
Section: net
Priority: optional
Homepage: https://github.com/devstreams/devstreams
Description: reach a device behind NAT through IoT Hub device streams
 The devstreams agent keeps an outbound connection to an IoT Hub compatible hub
 and, when a service asks for a stream to one of the device's allowed services,
 joins a WebSocket to a local TCP port or a terminal. Nothing is compiled or
 downloaded on the device.
CONTROL
	chmod 0644 "$root/DEBIAN/control"
	(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
	chmod 0644 "$root/DEBIAN/md5sums"
	find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	dpkg-deb --root-owner-group -Z"$COMPRESSION" --build "$root" "$deb" >/dev/null
	echo "$deb: $(stat -c %s "$deb") bytes"
	[ "$OUT" = dist ] && record_footprint "$arch" "$deb" $((SECONDS - started))
	return 0
}

# Package sizes next to the executables' in the benchmark results (scripts/binary/build.mjs writes those).
record_footprint() {
	node -e '
		const fs = require("fs");
		const [file, arch, deb, seconds, compression] = process.argv.slice(1);
		let doc = {};
		try { doc = JSON.parse(fs.readFileSync(file, "utf8")); } catch {}
		doc.debs = { ...(doc.debs ?? {}), [arch]: { file: deb, bytes: fs.statSync(deb).size, compression, build_seconds: Number(seconds) } };
		fs.mkdirSync(require("path").dirname(file), { recursive: true });
		fs.writeFileSync(file, JSON.stringify(doc, null, 2) + "\n");
	' bench/results/footprint.json "$1" "$2" "$3" "$COMPRESSION"
}

arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(arm64 armhf amd64)
for a in "${arches[@]}"; do build_one "$a"; done
