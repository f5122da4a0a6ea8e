#!/usr/bin/env bash
# run-bench.sh: Prepare+Commit+Remove round trips over gRPC, rafs-snapshotter
# vs containerd's built-in overlayfs snapshotter served over gRPC (built here
# offline from Debian's containerd Go sources), same machine, one run; then
# the daemon's resident memory holding 10k snapshots.
#
#   integration/bench/run-bench.sh BUILD_DIR [ITERATIONS]
#
# Needs root (overlayfs snapshotter), golang-go and
# golang-github-containerd-containerd-dev. State lives in a fresh temp dir on
# the filesystem of $TMPDIR (default /tmp).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run-bench.sh BUILD_DIR [ITERATIONS]}" && pwd)
iterations=${2:-2000}
bench=$build/test/snapshotter/snapshotter_bench
daemon=$build/cmd/rafs-snapshotter
work=$(mktemp -d "${TMPDIR:-/tmp}/rfs-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

gocode=/usr/share/gocode
gobin=$work/overlayfs-grpc
mkdir -p "$work/gopath/src/gotest.tools"
ln -sfn "$gocode/src/gotest.tools" "$work/gopath/src/gotest.tools/v3"
( cd "$here/overlayfs-grpc" && env GO111MODULE=off GOFLAGS= GOPROXY=off GOTOOLCHAIN=local \
    GOPATH="$work/gopath:$gocode" GOCACHE="${GOCACHE:-/tmp/rfs-bench-gocache}" \
    go build -o "$gobin" . )

wait_socket() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }

echo "== containerd overlayfs snapshotter over gRPC (Go, $(go version | awk '{print $3}'))"
"$gobin" -address "$work/overlay.sock" -root "$work/overlay-root" 2>"$work/overlay.log" &
pids+=($!)
wait_socket "$work/overlay.sock"
"$bench" --socket "$work/overlay.sock" --iterations "$iterations"
"$bench" --socket "$work/overlay.sock" --iterations "$((iterations / 4))" --parent-depth 20

printf 'metrics:\n  address: ""\n' >"$work/config.yaml"
echo "== rafs-snapshotter"
"$daemon" --address "$work/rafs.sock" --root "$work/rafs-root" --config "$work/config.yaml" \
  2>"$work/rafs.log" &
rafs_pid=$!
pids+=($rafs_pid)
wait_socket "$work/rafs.sock"
"$bench" --socket "$work/rafs.sock" --iterations "$iterations"
"$bench" --socket "$work/rafs.sock" --iterations "$((iterations / 4))" --parent-depth 20

echo "== rafs-snapshotter with 10k more committed snapshots: one List, round trips, memory"
"$bench" --socket "$work/rafs.sock" --iterations 200 --fill 10000
rss=$(awk '/VmRSS/ {print $2}' /proc/$rafs_pid/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$rafs_pid/status)
echo "VmRSS ${rss} kB, VmHWM ${hwm} kB after 10000 committed snapshots (+20 layers)"
