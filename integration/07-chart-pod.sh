#!/usr/bin/env bash
# 07: the Helm chart's pod, run without Kubernetes against a real containerd.
# The chart (charts/rafs-snapshotter) is rendered for this machine's paths;
# its init step (files/configure-containerd.sh, with the environment the
# DaemonSet gives it) adds the proxy plugin to a containerd config, which
# containerd then runs with; the fd keeper sidecar's script and the daemon
# container's script are run as the kubelet runs them (the sidecar until its
# startup probe passes, the daemon until its readiness probe passes). A RAFS
# image is pulled and a container reads new parts of a file in a loop while
# the daemon process is killed (-9; the container's loop starts it again)
# and while the whole daemon "container" is stopped and started again (the
# sidecar's keeper holds the mounts): the reads pause, never fail.
#
#   BUILD=build/gcc integration/07-chart-pod.sh
set -euo pipefail
source "$(dirname "$0")/lib/env.sh"
TOP=$(cd "$IT_LIB/../.." && pwd)
CHART=$TOP/charts/rafs-snapshotter
POD=$W/pod
mkdir -p "$POD" "$W/containerd"
command -v go >/dev/null || { echo "SKIP 07-chart-pod: no Go toolchain to render the chart"; exit 0; }
# The keeper sidecar's loop is ours to stop, before the rest is cleaned up.
trap 'rc=$?; set +e; stop_pid keeper; (exit $rc); it_cleanup' EXIT

start_registry

log "render the chart for this machine's paths"
mkdir -p "$W/gopath/src"
cp -r "$TOP/test/chart/render" "$W/gopath/src/chart-render"
(cd "$W/gopath/src/chart-render" &&
  env GOPATH="$W/gopath:/usr/share/gocode" GO111MODULE=off GOFLAGS= GOPROXY=off \
    GOCACHE="$W/gocache" go build -o "$W/chart-render" .)
cat >"$W/values.yaml" <<EOC
containerd:
  configFile: $W/containerd.toml
config:
  root: $SN_ROOT
  address: $SN_SOCK
  containerd_address: $CTRD_SOCK
  log: {level: debug}
  metrics: {address: "127.0.0.1:$METRICS_PORT"}
  rafs: {prefetch: none}
  registry: {plain_http: ["$REG"], docker_config: "$W/no-docker-config.json"}
EOC
"$W/chart-render" --check -f "$W/values.yaml" --out "$W/chart.yaml" \
  --config-out "$POD/config.yaml" --json-out "$POD/objects.json" "$CHART" ||
  fail "the chart does not render"
python3 "$TOP/test/chart/pod_scripts.py" "$POD" "$DAEMON"

log "init step: add the proxy plugin to containerd's config"
write_containerd_base "$W/containerd.toml"
(set -a && . "$POD/configure.env" && set +a && sh "$CHART/files/configure-containerd.sh") \
  >"$W/configure.log" 2>&1 || fail "the init step failed: $(cat "$W/configure.log")"
grep -q "address = \"$SN_SOCK\"" "$W/containerd.toml" || fail "no proxy plugin for $SN_SOCK"

log "fd keeper sidecar, then the daemon container"
sh "$POD/keeper.sh" >"$W/keeper.log" 2>&1 &
PIDS[keeper]=$!
wait_for "the sidecar's startup probe" sh "$POD/startup-probe.sh"
start_daemon_container() {
  sh "$POD/daemon.sh" >>"$W/snapshotter.log" 2>&1 &
  PIDS[snapshotter]=$!
  wait_for "the daemon's readiness probe" curl -fsS "$(cat "$POD/readiness-url")"
}
start_daemon_container

containerd --config "$W/containerd.toml" >"$W/containerd.log" 2>&1 &
PIDS[containerd]=$!
wait_for "containerd" ctr --address "$CTRD_SOCK" version

push_lazy_image
rpull_lazy_image
log "a container reads 64 KiB pieces of /data/big in a loop"
ctr_ run -d --snapshotter nydus "$LAZY" rfs-it-pod-reader /bin/busybox sh -c '
  i=0; while [ $i -lt 500 ]; do
    /bin/busybox dd if=/data/big of=/dev/null bs=65536 count=1 skip=$i 2>/dev/null ||
      echo "READ FAILED at $i" >> /tmp/errors
    i=$((i+1)); echo $i > /tmp/progress; /bin/busybox usleep 20000
  done; echo done > /tmp/finished; sleep 600' >/dev/null
progress() {
  ctr --address "$CTRD_SOCK" -n "$NS" tasks exec --exec-id "p$RANDOM" rfs-it-pod-reader \
    /bin/busybox cat /tmp/progress 2>/dev/null || echo 0
}
reads_beyond() { [ "$(progress)" -gt "$1" ]; }
wait_for "the reader to start" reads_beyond 10
[ "$(rafs_mounts)" = 1 ] || fail "expected one RAFS mount"
daemon_pid() { pgrep -f -- "--config $POD/config.yaml" | head -1; }

before=$(progress)
took=$(grep -c "took over the mount" "$W/snapshotter.log" || true)
log "kill -9 the daemon process at read $before: the container's loop starts it again"
first=$(daemon_pid)
kill -KILL "$first"
new_daemon() { local p; p=$(daemon_pid); [ -n "$p" ] && [ "$p" != "$first" ]; }
wait_for "a new daemon in the same container" new_daemon
wait_for "the daemon's readiness probe" curl -fsS "$(cat "$POD/readiness-url")"
[ "$(grep -c "took over the mount" "$W/snapshotter.log")" -gt "$took" ] ||
  fail "the restarted daemon did not take over the mount"
wait_for "reads to go on after the daemon restart" reads_beyond $((before + 20))

before=$(progress)
took=$(grep -c "took over the mount" "$W/snapshotter.log")
log "stop the daemon container (SIGTERM) at read $before and start it again"
stop_pid snapshotter
[ -z "$(daemon_pid)" ] || fail "the daemon outlived its container"
sleep 1  # reads queue in the kernel meanwhile
[ "$(rafs_mounts)" = 1 ] || fail "the RAFS mount went away with the daemon container"
start_daemon_container
[ "$(grep -c "took over the mount" "$W/snapshotter.log")" -gt "$took" ] ||
  fail "the new daemon container did not take over the mount"
wait_for "reads to go on after the container restart" reads_beyond $((before + 20))

finished() {
  ctr --address "$CTRD_SOCK" -n "$NS" tasks exec --exec-id "f$RANDOM" rfs-it-pod-reader \
    /bin/busybox cat /tmp/finished >/dev/null 2>&1
}
wait_for "the reader to finish" finished
errors=$(ctr_ tasks exec --exec-id e1 rfs-it-pod-reader /bin/busybox sh -c 'cat /tmp/errors 2>/dev/null || true')
[ -z "$errors" ] || fail "the reader saw errors across the restarts: $errors"
log "500 reads across a daemon kill -9 and a daemon container restart, no error"

ctr_ tasks delete --force rfs-it-pod-reader >/dev/null
ctr_ containers rm rfs-it-pod-reader >/dev/null
ctr_ images rm --sync "$LAZY" >/dev/null
wait_for "snapshots collected" counts_are "0 0 0"
check_consistent
log "PASS 07-chart-pod"
