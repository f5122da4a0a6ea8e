#!/usr/bin/env bash
# 03: a RAFS image served lazily. An image built with `rafs build` is pushed
# to a loopback docker-registry in the nydus layout; real containerd pulls it
# with our daemon as proxy snapshotter "nydus": the data layer is not
# downloaded, only the bootstrap layer. Containers read files through the
# image's in-process RAFS mount; only the chunks they read are fetched. Two
# containers share one mount; removing the image stops it. The registry going
# down mid-way gives EIO (not a hang) and a metric, and reads recover when it
# is back.
#
#   BUILD=build/gcc integration/03-lazy-rafs.sh
set -euo pipefail
source "$(dirname "$0")/lib/env.sh"
SN_EXTRA_CONFIG='rafs: {read_timeout_seconds: 5, prefetch: none}'

start_registry
start_snapshotter
start_containerd

push_lazy_image
fetched() {  # bytes fetched from the registry by our daemon, on demand
  curl -fsS "http://127.0.0.1:$METRICS_PORT/v1/metrics" |
    awk '/^rfs_storage_backend_bytes_total\{source="on_demand"\}/ {print $2}' | tail -1
}

log "rpull with --snapshotter nydus: only the bootstrap layer is downloaded"
rpull_lazy_image
read -r a v c <<<"$(sn_counts)"
[ "$c" = 2 ] || fail "expected 2 committed layers (data + bootstrap), got $a/$v/$c"
[ "$(rafs_mounts)" = 0 ] || fail "an image mount exists before any container"

log "run a container: it reads two files"
out=$(ctr_ run --snapshotter nydus --rm "$LAZY" rfs-it-lazy1 \
  /bin/busybox sh -c 'cat /etc/hello; /bin/busybox md5sum /data/medium; echo w > /tmp/x; cat /tmp/x')
echo "$out" | grep -qx 'hello from a lazy image' || fail "wrong output: $out"
echo "$out" | grep -q "^$WANT_MEDIUM" || fail "medium file differs: $out"
echo "$out" | grep -qx 'w' || fail "upper dir not writable: $out"
got=$(fetched)
log "fetched ${got:-0} of $LAZY_SIZE bytes"
[ -n "$got" ] && [ "$got" -gt 0 ] || fail "nothing fetched on demand?"
[ "$got" -lt $((LAZY_SIZE / 4)) ] || fail "fetched $got of $LAZY_SIZE bytes: not lazy"

status=$(curl -fsS "http://127.0.0.1:$METRICS_PORT/v1/status")
python3 - "$status" "$LAZY" <<'EOP' || fail "bad /v1/status: $status"
import json, sys
s = json.loads(sys.argv[1])
img = s["images"]
assert len(img) == 1 and img[0]["image"] == sys.argv[2], img
assert img[0]["serving"] and 0 < img[0]["fetched_bytes"] < img[0]["image_bytes"] / 4, img
assert img[0]["read_bytes"] > 300000 and img[0]["eio"] == 0, img
assert s["cache_bytes"] > 0, s
EOP
log "status: $(tr -d ' \n' <<<"$status" | cut -c1-200)"

log "two containers share one image mount"
ctr_ run -d --snapshotter nydus "$LAZY" rfs-it-lazy2 /bin/busybox sleep 600 >/dev/null
ctr_ run -d --snapshotter nydus "$LAZY" rfs-it-lazy3 /bin/busybox sleep 600 >/dev/null
[ "$(rafs_mounts)" = 1 ] || fail "expected one RAFS mount, have $(rafs_mounts)"
ctr_ tasks exec --exec-id e1 rfs-it-lazy2 /bin/busybox cat /etc/hello | grep -q lazy ||
  fail "container 2 cannot read"

log "registry down: a read of an unfetched file fails with EIO within the deadline"
stop_pid registry
t0=$(date +%s)
if ctr_ tasks exec --exec-id e2 rfs-it-lazy3 /bin/busybox dd if=/data/big of=/dev/null bs=1M count=4 \
    >"$W/dd.out" 2>&1; then
  fail "reading with the registry down succeeded: $(cat "$W/dd.out")"
fi
t1=$(date +%s)
[ $((t1 - t0)) -lt 30 ] || fail "the failed read took $((t1 - t0)) s"
grep -qi 'i/o error\|input/output' "$W/dd.out" || fail "expected EIO: $(cat "$W/dd.out")"
metrics_text=$(curl -fsS "http://127.0.0.1:$METRICS_PORT/v1/metrics")
grep -q '^rafs_fuse_eio_total{reason=' <<<"$metrics_text" || fail "no EIO metric"
log "EIO after $((t1 - t0)) s; registry back: the same read succeeds"
docker-registry serve "$W/registry.yml" >>"$W/registry.log" 2>&1 &
PIDS[registry]=$!
wait_for "registry on $REG" curl -fsS "http://$REG/v2/"
ctr_ tasks exec --exec-id e3 rfs-it-lazy3 /bin/busybox dd if=/data/big of=/dev/null bs=1M count=4 \
  >"$W/dd.out" 2>&1 || fail "read after recovery failed: $(cat "$W/dd.out")"

log "remove containers and image: the image mount goes"
for c in rfs-it-lazy2 rfs-it-lazy3; do
  ctr_ tasks delete --force "$c" >/dev/null 2>&1 || fail "cannot delete task $c"
  ctr_ containers rm "$c" >/dev/null
done
ctr_ images rm --sync "$LAZY" >/dev/null
wait_for "snapshots collected" counts_are "0 0 0"
wait_for "the RAFS mount to stop" bash -c "[ \$(awk -v d='$SN_ROOT/' '\$3 == \"fuse.rafs\" && index(\$2, d) == 1' /proc/self/mounts | wc -l) = 0 ]"
check_consistent
log "PASS 03-lazy-rafs"
