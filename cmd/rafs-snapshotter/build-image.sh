#!/usr/bin/env bash
# Builds the container image the Helm chart (charts/rafs-snapshotter) runs,
# offline, from this machine's installed Debian packages: the
# rafs-snapshotter binary at /usr/local/bin/rafs-snapshotter, the Debian
# packages of the shared libraries it and the tools need, and the small
# userland of the chart's scripts (sh, awk, grep, coreutils, cmp, nsenter).
# The result is a plain OCI image (never convert it to RAFS: nodes must be
# able to start the snapshotter without the snapshotter).
#
#   build-image.sh BINARY OCI_LAYOUT_DIR [TAG]
#   skopeo copy oci:OCI_LAYOUT_DIR:TAG docker://REGISTRY/rafs-snapshotter:TAG
#
# TAG defaults to the binary's version. RFS_IMAGE_ROOTFS=DIR also keeps the
# root filesystem in DIR (the chart test runs the chart's commands in it).
# Needs root (umoci unpack/repack keep file owners) and the Debian packages
# umoci and python3.
set -euo pipefail

bin=${1:?usage: build-image.sh BINARY OCI_LAYOUT_DIR [TAG]}
out=${2:?usage: build-image.sh BINARY OCI_LAYOUT_DIR [TAG]}
tag=${3:-$("$bin" --version | awk '{print $2}')}
top=$(cd "$(dirname "$0")/../.." && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=${RFS_IMAGE_ROOTFS:-$work/rootfs}
rm -rf "$rootfs"

# The userland the chart's commands and scripts use.
tools=(/bin/sh /usr/bin/awk /bin/grep /bin/sed /bin/cp /bin/mv /bin/mkdir /bin/rm /bin/cat
       /usr/bin/dirname /bin/sleep /usr/bin/cmp /usr/bin/nsenter /usr/bin/env /usr/bin/test)
packages=(base-files libc6 libc-bin dash mawk grep sed coreutils diffutils util-linux)

# The package owning a file (Debian lists /lib/... paths under /usr/lib/...
# after usr-merge, and the other way round).
owner() {
  local p=$1 q
  for q in "$p" "${p#/usr}" "/usr$p"; do
    if dpkg -S "$q" >/dev/null 2>&1; then
      dpkg -S "$q" | awk -F: 'NR == 1 {print $1}'
      return 0
    fi
  done
  echo "build-image: no Debian package owns $p" >&2
  return 1
}
for f in "$bin" "${tools[@]}"; do
  for lib in $(ldd "$(readlink -f "$f")" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    packages+=("$(owner "$(readlink -f "$lib")")")
  done
done
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)

/usr/bin/python3 "$top/integration/lib/debian_rootfs.py" "$rootfs" "${packages[@]}" >/dev/null
install -D -m 0755 "$bin" "$rootfs/usr/local/bin/rafs-snapshotter"
# Debug info stays with the build; documentation is not needed at run time.
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug "$rootfs/usr/local/bin/rafs-snapshotter"
fi
rm -rf "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/info" \
  "$rootfs/usr/share/locale"
mkdir -p "$rootfs/etc/rafs-snapshotter" "$rootfs/tmp" "$rootfs/run" "$rootfs/proc" \
  "$rootfs/sys" "$rootfs/dev"
chmod 1777 "$rootfs/tmp"
# awk is an alternatives link, which no package lists.
[ -e "$rootfs/usr/bin/awk" ] || ln -s mawk "$rootfs/usr/bin/awk"
for f in "${tools[@]}"; do
  if [ ! -x "$rootfs$f" ]; then
    echo "build-image: $f is missing from the image" >&2
    exit 1
  fi
done

if [ ! -e "$out/index.json" ]; then
  umoci init --layout "$out"
fi
umoci new --image "$out:$tag"
umoci unpack --image "$out:$tag" "$work/bundle" >/dev/null
cp -a "$rootfs/." "$work/bundle/rootfs/"
umoci repack --image "$out:$tag" "$work/bundle"
umoci config --image "$out:$tag" \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.cmd /usr/local/bin/rafs-snapshotter \
  --config.cmd --config --config.cmd /etc/rafs-snapshotter/config.yaml \
  --config.label org.opencontainers.image.title=rafs-snapshotter \
  --config.label "org.opencontainers.image.version=$tag"
umoci gc --layout "$out"
echo "built oci:$out:$tag ($(du -sh "$rootfs" | cut -f1) unpacked, ${#packages[@]} packages)"
