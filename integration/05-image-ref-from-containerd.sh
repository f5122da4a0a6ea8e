#!/usr/bin/env bash
# 05: a RAFS image whose layers do not say where the image comes from. Clients
# that pull with containerd's unpacker but without the "append info" handler
# (the CRI plugin with its default disable_snapshot_annotations = true, Go
# clients, newer ctr) label layers with their annotations and chain id only,
# no containerd.io/snapshot/cri.image-ref. Here the image is pulled with
# ctr-remote (which adds remote/stargz.reference) and that label is then
# removed from the bootstrap snapshot, which leaves exactly such labels. When
# a container starts, the daemon asks containerd (containerd_address) which
# image the bootstrap layer belongs to, and serves it from that registry.
#
#   BUILD=build/gcc integration/05-image-ref-from-containerd.sh
set -euo pipefail
source "$(dirname "$0")/lib/env.sh"
RAFS=$BUILD/cmd/rafs
SN_EXTRA_CONFIG='rafs: {prefetch: none}'

start_registry
start_snapshotter
start_containerd

log "build and push a RAFS image"
src=$W/src
mkdir -p "$src/bin" "$src/etc"
cp /bin/busybox "$src/bin/busybox"
echo "named by containerd" >"$src/etc/hello"
mkdir -p "$W/blobs"
"$RAFS" build "$src" --bootstrap "$W/image.boot" --blob-dir "$W/blobs" >/dev/null
IMG=$REG/rfs-it/noref:1
python3 "$IT_LIB/push_nydus_image.py" "$REG" rfs-it/noref 1 "$W/image.boot" "$W/blobs"/* >/dev/null

log "pull; drop the image reference label from the bootstrap snapshot"
ctr-remote --address "$CTRD_SOCK" -n "$NS" images rpull --plain-http --snapshotter nydus "$IMG" \
  >"$W/rpull.out" 2>&1 || fail "rpull failed: $(tail -5 "$W/rpull.out")"
# The bootstrap layer is the top of the chain: the snapshot no other has as parent.
snaps=$(ctr_ snapshots --snapshotter nydus ls)
meta=$(echo "$snaps" | awk 'NR > 1 {k[$1] = 1; if ($2 ~ /^sha256:/) p[$2] = 1}
                            END {for (x in k) if (!(x in p)) print x}')
[ -n "$meta" ] || fail "no bootstrap snapshot in: $snaps"
ctr_ snapshots --snapshotter nydus info "$meta" | grep -q 'nydus-bootstrap' ||
  fail "top snapshot $meta is not the bootstrap layer"
ctr_ snapshots --snapshotter nydus label "$meta" \
  containerd.io/snapshot/remote/stargz.reference= >/dev/null
if ctr_ snapshots --snapshotter nydus info "$meta" | grep -q 'stargz.reference'; then
  fail "the image reference label is still there"
fi
grep -q 'cri.image-ref' "$W/snapshotter.log" && fail "layers were labelled with cri.image-ref"

log "run a container: containerd names the image"
out=$(ctr_ run --snapshotter nydus --rm "$IMG" rfs-it-noref1 /bin/busybox cat /etc/hello 2>&1) ||
  fail "container failed: $out"
[ "$out" = "named by containerd" ] || fail "wrong output: $out"
grep -q "containerd names the image of layer chain id $meta: $IMG (namespace $NS)" \
  "$W/snapshotter.log" || fail "the daemon did not ask containerd"

log "remove the image: snapshots and the image mount go"
ctr_ images rm --sync "$IMG" >/dev/null
wait_for "snapshots collected" counts_are "0 0 0"
wait_for "the RAFS mount to stop" bash -c "[ \$(awk -v d='$SN_ROOT/' '\$3 == \"fuse.rafs\" && index(\$2, d) == 1' /proc/self/mounts | wc -l) = 0 ]"
check_consistent
log "PASS 05-image-ref-from-containerd"
