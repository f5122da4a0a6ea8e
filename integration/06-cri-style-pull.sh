#!/usr/bin/env bash
# 06: a RAFS image pulled the way the CRI plugin and nerdctl pull. A small Go
# client (integration/lib/cri-pull, built here offline in GOPATH mode from
# Debian's golang-github-containerd-containerd-dev) calls containerd's
# client.Pull with unpack into snapshotter "nydus" and containerd's
# AppendInfoHandlerWrapper, so every layer reaches our daemon with the labels
# containerd.io/snapshot/cri.{image-ref,layer-digest,image-layers,
# manifest-digest} (and no remote/stargz.* label, unlike ctr-remote rpull).
# The data layer is committed without downloading it; `ctr run` then starts
# containers from the image: the output is right, the container's snapshot
# says rafs-status=lazy, the image is named by cri.image-ref (containerd is
# not asked) and only a small fraction of the image is fetched.
#
#   BUILD=build/gcc integration/06-cri-style-pull.sh
set -euo pipefail
source "$(dirname "$0")/lib/env.sh"
command -v go >/dev/null || { echo "integration: missing go (golang-go; bash .ci/setup)" >&2; exit 2; }
GOCODE=/usr/share/gocode
[ -f "$GOCODE/src/github.com/containerd/containerd/pkg/snapshotters/annotations.go" ] ||
  { echo "integration: missing $GOCODE/src/github.com/containerd/containerd" \
         "(golang-github-containerd-containerd-dev; bash .ci/setup)" >&2; exit 2; }

log "build the CRI-style pull client (offline, GOPATH mode)"
# The build cache outlives the run: the containerd client is a minute's
# compile on a small machine, seconds afterwards.
(cd "$IT_LIB/cri-pull" && env GOPATH="$GOCODE" GO111MODULE=off GOFLAGS= GOPROXY=off \
  GOTOOLCHAIN=local GOCACHE="${GOCACHE:-${TMPDIR:-/tmp}/rfs-it-gocache}" \
  go build -o "$W/cri-pull" .) >"$W/go-build.log" 2>&1 || fail "go build: $(tail -5 "$W/go-build.log")"

start_registry
start_snapshotter
start_containerd

push_lazy_image
# Bytes our daemon fetched from the registry, on demand and by prefetch.
fetched() {
  curl -fsS "http://127.0.0.1:$METRICS_PORT/v1/metrics" |
    awk '/^rfs_storage_backend_bytes_total\{/ {s += $2} END {printf "%d\n", s}'
}

log "CRI-style pull into snapshotter nydus"
"$W/cri-pull" -address "$CTRD_SOCK" -namespace "$NS" -snapshotter nydus -plain-http "$REG" "$LAZY" \
  >"$W/cri-pull.out" 2>&1 || fail "cri-pull failed: $(tail -5 "$W/cri-pull.out")"
log "$(cat "$W/cri-pull.out")"
read -r a v c <<<"$(sn_counts)"
[ "$c" = 2 ] && [ "$a" = 0 ] || fail "expected 2 committed layers (data + bootstrap), got $a/$v/$c"
[ "$(fetched)" = 0 ] || fail "the pull itself fetched $(fetched) bytes through the daemon"
[ "$(rafs_mounts)" = 0 ] || fail "an image mount exists before any container"

# The labels the daemon was given: the data layer's snapshot (committed under
# its chain id at Prepare) keeps them; the bootstrap layer is on top.
manifest=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/rfs-it/lazy/manifests/1")
mdigest=sha256:$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)
read -r data_digest boot_digest < <(python3 -c '
import json, sys
m = json.loads(sys.argv[1])
ls = m["layers"]
blob = [l["digest"] for l in ls if "containerd.io/snapshot/nydus-blob" in l.get("annotations", {})]
boot = [l["digest"] for l in ls if "containerd.io/snapshot/nydus-bootstrap" in l.get("annotations", {})]
assert len(blob) == 1 and len(boot) == 1, ls
print(blob[0], boot[0])' "$manifest")
snaps=$(ctr_ snapshots --snapshotter nydus ls)
data_snap=$(echo "$snaps" | awk 'NR > 1 && NF == 2 {print $1}')  # KEY KIND: no parent
[ -n "$data_snap" ] || fail "no parentless snapshot in: $snaps"
info=$(ctr_ snapshots --snapshotter nydus info "$data_snap")
python3 - "$info" "$LAZY" "$data_digest" "$boot_digest" "$mdigest" <<'EOP' || fail "data layer labels: $info"
import json, sys
info, ref, data, boot, manifest = sys.argv[1:]
l = json.loads(info)["Labels"]
p = "containerd.io/snapshot/"
assert l[p + "cri.image-ref"] == ref, l
assert l[p + "cri.layer-digest"] == data, l
assert l[p + "cri.manifest-digest"] == manifest, l
assert l[p + "cri.image-layers"].split(",") == [data, boot], l
assert p + "nydus-blob" in l, l
assert not any(k.startswith(p + "remote/") for k in l), l
EOP
grep -q "remote RAFS data layer .* committed" "$W/snapshotter.log" || fail "data layer not committed remotely"
# containerd downloaded the manifest, config and bootstrap layer, not the data blob.
ctr_ content ls -q | grep -qx "$data_digest" && fail "containerd downloaded the data layer"
ctr_ content ls -q | grep -qx "$boot_digest" || fail "the bootstrap layer is not in the content store"

log "run a container with ctr: it reads two files"
out=$(ctr_ run --snapshotter nydus --rm "$LAZY" rfs-it-cri1 \
  /bin/busybox sh -c 'cat /etc/hello; /bin/busybox md5sum /data/medium' 2>&1) || fail "container failed: $out"
echo "$out" | grep -qx 'hello from a lazy image' || fail "wrong output: $out"
echo "$out" | grep -q "^$WANT_MEDIUM " || fail "medium file differs: $out"
got=$(fetched)
log "fetched $got of $LAZY_SIZE bytes"
[ "$got" -gt 300000 ] || fail "fetched only $got bytes, but /data/medium alone is 300000"
[ "$got" -lt $((LAZY_SIZE / 4)) ] || fail "fetched $got of $LAZY_SIZE bytes: not lazy"
grep -q "containerd names the image" "$W/snapshotter.log" &&
  fail "the daemon asked containerd although cri.image-ref was given"

log "a running container's snapshot says it is served lazily"
ctr_ run -d --snapshotter nydus "$LAZY" rfs-it-cri2 /bin/busybox sleep 600 >/dev/null
label=$(ctr_ snapshots --snapshotter nydus info rfs-it-cri2 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Labels"].get("containerd.io/snapshot/rafs-status", ""))')
[ "$label" = lazy ] || fail "rafs-status of the container's snapshot is '$label'"
[ "$(rafs_mounts)" = 1 ] || fail "expected one RAFS mount, have $(rafs_mounts)"
ctr_ tasks exec --exec-id e1 rfs-it-cri2 /bin/busybox cat /etc/hello | grep -qx 'hello from a lazy image' ||
  fail "the running container cannot read"
status=$(curl -fsS "http://127.0.0.1:$METRICS_PORT/v1/status")
python3 - "$status" "$LAZY" <<'EOP' || fail "bad /v1/status: $status"
import json, sys
img = json.loads(sys.argv[1])["images"]
assert len(img) == 1 and img[0]["image"] == sys.argv[2], img
assert img[0]["serving"] and 0 < img[0]["fetched_bytes"] < img[0]["image_bytes"] / 4, img
assert img[0]["read_bytes"] >= 300000 and img[0]["eio"] == 0, img
EOP
log "status: $(tr -d ' \n' <<<"$status" | cut -c1-200)"

log "remove the container and the image: snapshots and the image mount go"
ctr_ tasks delete --force rfs-it-cri2 >/dev/null 2>&1 || fail "cannot delete task rfs-it-cri2"
ctr_ containers rm rfs-it-cri2 >/dev/null
ctr_ images rm --sync "$LAZY" >/dev/null
wait_for "snapshots collected" counts_are "0 0 0"
wait_for "the RAFS mount to stop" bash -c "[ \$(awk -v d='$SN_ROOT/' '\$3 == \"fuse.rafs\" && index(\$2, d) == 1' /proc/self/mounts | wc -l) = 0 ]"
check_consistent
log "PASS 06-cri-style-pull"
