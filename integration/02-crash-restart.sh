#!/usr/bin/env bash
# 02: kill -9 rafs-snapshotter in the middle of a stream of
# Prepare/Commit/Remove, several times at different moments; after each
# restart (same root and socket) the store and the snapshot directories
# agree, and the containerd that was using it all along can still run a
# container from the image it pulled before the crashes and pull again.
#
#   BUILD=build/gcc integration/02-crash-restart.sh
set -euo pipefail
source "$(dirname "$0")/lib/env.sh"

start_registry
start_snapshotter
start_containerd
push_test_image
ctr_ images pull --plain-http --snapshotter nydus "$IMAGE" >/dev/null
check_consistent

rounds=${RFS_CRASH_ROUNDS:-6}
for round in $(seq "$rounds"); do
  # A stream of round trips on top of a small chain, from two clients.
  "$BENCH" --socket "$SN_SOCK" --iterations 1000000 --parent-depth 3 >"$W/bench-$round-a.log" 2>&1 &
  b1=$!
  "$BENCH" --socket "$SN_SOCK" --iterations 1000000 >"$W/bench-$round-b.log" 2>&1 &
  b2=$!
  # The kill moment varies per round (this picks when to crash; nothing
  # waits on it for synchronisation).
  sleep "0.$(( (round * 37) % 9 + 1 ))"
  kill -KILL "${PIDS[snapshotter]}"
  wait "${PIDS[snapshotter]}" 2>/dev/null || true
  unset "PIDS[snapshotter]"
  wait $b1 2>/dev/null || true
  wait $b2 2>/dev/null || true
  leftovers=$(find "$SN_ROOT/snapshots" -mindepth 1 -maxdepth 1 -name 'new-*' -o -mindepth 1 -maxdepth 1 -name 'rm-*' | wc -l)
  log "round $round: killed; $leftovers temp dirs left behind"
  start_snapshotter
  check_consistent
done

log "containerd continues: run from the image pulled before the crashes"
# containerd's proxy client fails the first call on a dropped connection
# (UNAVAILABLE) and redials with backoff (3 s at most): wait for it.
wait_for "containerd to redial the snapshotter" ctr_ snapshots --snapshotter nydus usage
out=$(ctr_ run --snapshotter nydus --rm "$IMAGE" rfs-it-after-crash /bin/cat /etc/hello 2>&1) || fail "run after restarts: $out"
[ "$out" = "hello from layer 2" ] || fail "unexpected output after restarts: $out"
log "containerd continues: a fresh pull and run in another namespace"
ctr --address "$CTRD_SOCK" -n rfs-it-2 images pull --plain-http --snapshotter nydus "$IMAGE" >/dev/null
out=$(ctr --address "$CTRD_SOCK" -n rfs-it-2 run --snapshotter nydus --rm "$IMAGE" rfs-it-c2 /bin/cat /etc/hello)
[ "$out" = "hello from layer 2" ] || fail "unexpected output in the second namespace: $out"
ctr --address "$CTRD_SOCK" -n rfs-it-2 images rm --sync "$IMAGE" >/dev/null
check_consistent
log "PASS 02-crash-restart"
