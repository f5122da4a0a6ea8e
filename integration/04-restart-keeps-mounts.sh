#!/usr/bin/env bash
# 04: restarting our daemon does not break containers of a lazily served
# RAFS image. A container reads new parts of a file in a loop (each read
# reaches the daemon: nothing is in the page cache yet) while the daemon is
# stopped with SIGTERM and started again, then killed with SIGKILL and
# started again. The fd keeper holds the /dev/fuse descriptors meanwhile and
# the new daemon takes the mounts over: the loop sees pauses, never an error.
#
#   BUILD=build/gcc integration/04-restart-keeps-mounts.sh
set -euo pipefail
source "$(dirname "$0")/lib/env.sh"
SN_EXTRA_CONFIG='rafs: {prefetch: none}'

start_registry
start_snapshotter
start_containerd
push_lazy_image
rpull_lazy_image

log "a container reads 64 KiB pieces of /data/big in a loop"
ctr_ run -d --snapshotter nydus "$LAZY" rfs-it-reader /bin/busybox sh -c '
  i=0; while [ $i -lt 600 ]; do
    /bin/busybox dd if=/data/big of=/dev/null bs=65536 count=1 skip=$i 2>/dev/null ||
      echo "READ FAILED at $i" >> /tmp/errors
    i=$((i+1)); echo $i > /tmp/progress; /bin/busybox usleep 20000
  done; echo done > /tmp/finished; sleep 600' >/dev/null
progress() { ctr_ tasks exec --exec-id "p$RANDOM" rfs-it-reader /bin/busybox cat /tmp/progress 2>/dev/null || echo 0; }
wait_for "the reader to start" bash -c "[ \$(ctr --address '$CTRD_SOCK' -n '$NS' tasks exec --exec-id s\$RANDOM rfs-it-reader /bin/busybox cat /tmp/progress 2>/dev/null || echo 0) -gt 10 ]"
[ "$(rafs_mounts)" = 1 ] || fail "expected one RAFS mount"

restart() {  # signal
  local before; before=$(progress)
  log "daemon: $1 at read $before"
  kill "-$1" "${PIDS[snapshotter]}"
  wait "${PIDS[snapshotter]}" 2>/dev/null || true
  unset "PIDS[snapshotter]"
  sleep 1  # reads queue in the kernel meanwhile
  [ "$(rafs_mounts)" = 1 ] || fail "the RAFS mount went away with the daemon"
  start_snapshotter
  grep -q "took over the mount" "$W/snapshotter.log" || fail "the new daemon did not take over"
  local want=$((before + 20))
  wait_for "reads to go on after the restart" bash -c \
    "[ \$(ctr --address '$CTRD_SOCK' -n '$NS' tasks exec --exec-id q\$RANDOM rfs-it-reader /bin/busybox cat /tmp/progress 2>/dev/null || echo 0) -gt $want ]"
}
restart TERM
restart KILL

wait_for "the reader to finish" bash -c \
  "ctr --address '$CTRD_SOCK' -n '$NS' tasks exec --exec-id f\$RANDOM rfs-it-reader /bin/busybox cat /tmp/finished >/dev/null 2>&1"
errors=$(ctr_ tasks exec --exec-id e1 rfs-it-reader /bin/busybox sh -c 'cat /tmp/errors 2>/dev/null || true')
[ -z "$errors" ] || fail "the reader saw errors across the restarts: $errors"
log "600 reads across two restarts, no error"

ctr_ tasks delete --force rfs-it-reader >/dev/null
ctr_ containers rm rfs-it-reader >/dev/null
ctr_ images rm --sync "$LAZY" >/dev/null
wait_for "snapshots collected" counts_are "0 0 0"
wait_for "the RAFS mount to stop" bash -c "[ \$(awk -v d='$SN_ROOT/' '\$3 == \"fuse.rafs\" && index(\$2, d) == 1' /proc/self/mounts | wc -l) = 0 ]"
check_consistent
log "PASS 04-restart-keeps-mounts"
