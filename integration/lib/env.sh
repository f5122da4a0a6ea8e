# Shared set-up for the integration scenarios: a temp work dir, a loopback
# docker-registry, our daemon, and containerd with its own config, state and
# socket that has our daemon as proxy snapshotter "nydus". Everything listens
# on 127.0.0.1 or on unix sockets under the work dir, and is stopped (by the
# pids recorded here) on exit.
#
# Source it with BUILD set to the CMake build dir. Needs root, containerd,
# runc, docker-registry, busybox-static, curl, python3, ctr-remote
# (stargz-snapshotter).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "integration: needs root" >&2; exit 2; }
for c in containerd ctr ctr-remote runc docker-registry curl python3; do
  command -v "$c" >/dev/null || { echo "integration: missing $c (bash .ci/setup)" >&2; exit 2; }
done
[ -x /bin/busybox ] || { echo "integration: missing /bin/busybox (busybox-static)" >&2; exit 2; }
# runc needs a cgroup filesystem. A chroot (such as a fresh-Debian test root
# with /sys bound non-recursively) may have none: say so and skip.
if ! grep -qE ' - cgroup2? ' /proc/self/mountinfo; then
  echo "SKIP $(basename "$0"): no cgroup filesystem is mounted here, so runc cannot start containers"
  exit 0
fi

IT_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$(cd "${BUILD:?set BUILD to the build dir}" && pwd)
DAEMON=$BUILD/cmd/rafs-snapshotter
BENCH=$BUILD/test/snapshotter/snapshotter_bench
W=$(mktemp -d "${TMPDIR:-/tmp}/rfs-it.XXXXXX")
NS=rfs-it
declare -A PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop_pid() {  # name
  local p=${PIDS[$1]:-}
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset "PIDS[$1]"
}

it_cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ]; then
    for f in "$W"/*.log; do [ -f "$f" ] && { echo "--- tail $f"; tail -20 "$f"; }; done
  fi
  # Containers and tasks of our namespace, then the daemons.
  if [ -n "${PIDS[containerd]:-}" ]; then
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$c" 2>/dev/null; ctr_ containers rm "$c" 2>/dev/null; done
  fi
  stop_pid containerd
  stop_pid snapshotter
  stop_pid registry
  # The fd keeper of our daemon (it outlives the daemon on purpose).
  pkill -f -- "--fd-keeper $W/" 2>/dev/null
  # Mounts left below the work dir (only if something died half-way).
  awk -v d="$W/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$W"
  exit $rc
}
trap it_cleanup EXIT

wait_for() {  # description, command...
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}

REG_PORT=$(free_port)
REG=127.0.0.1:$REG_PORT
start_registry() {
  mkdir -p "$W/registry"
  cat >"$W/registry.yml" <<EOC
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $W/registry}, delete: {enabled: true}}
http: {addr: $REG}
EOC
  docker-registry serve "$W/registry.yml" >"$W/registry.log" 2>&1 &
  PIDS[registry]=$!
  wait_for "registry on $REG" curl -fsS "http://$REG/v2/"
}

SN_SOCK=$W/sn/rafs.sock
SN_ROOT=$W/sn/root
METRICS_PORT=$(free_port)
start_snapshotter() {
  cat >"$W/sn-config.yaml" <<EOC
log: {level: debug}
metrics: {address: "127.0.0.1:$METRICS_PORT"}
registry: {plain_http: ["$REG"], docker_config: "$W/no-docker-config.json"}
containerd_address: "$CTRD_SOCK"
${SN_EXTRA_CONFIG:-}
EOC
  "$DAEMON" --address "$SN_SOCK" --root "$SN_ROOT" --config "$W/sn-config.yaml" >>"$W/snapshotter.log" 2>&1 &
  PIDS[snapshotter]=$!
  wait_for "snapshotter socket" bash -c "test -S '$SN_SOCK' || ! kill -0 ${PIDS[snapshotter]}"
  kill -0 "${PIDS[snapshotter]}" 2>/dev/null || fail "snapshotter exited at start"
  wait_for "snapshotter health" curl -fsS "http://127.0.0.1:$METRICS_PORT/healthz"
}

CTRD_SOCK=$W/containerd/containerd.sock
# containerd's own settings for a test (its state under $W, CRI off), into
# $1; the proxy plugin section is added by the caller.
write_containerd_base() {
  mkdir -p "$W/containerd"
  cat >"$1" <<EOC
version = 2
root = "$W/containerd/root"
state = "$W/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOC
}
start_containerd() {
  write_containerd_base "$W/containerd.toml"
  # The snippet users copy (docs/containerd/config-v2.toml), with our socket:
  # the same text containerd loads here (its CRI part is parsed, the CRI
  # plugin itself is disabled in these tests).
  sed "s|/run/containerd-nydus/containerd-nydus-grpc.sock|$SN_SOCK|" \
    "$IT_LIB/../../docs/containerd/config-v2.toml" >>"$W/containerd.toml"
  grep -q "address = \"$SN_SOCK\"" "$W/containerd.toml" || fail "proxy plugin snippet not applied"
  containerd --config "$W/containerd.toml" >"$W/containerd.log" 2>&1 &
  PIDS[containerd]=$!
  wait_for "containerd" ctr --address "$CTRD_SOCK" version
}

ctr_() { ctr --address "$CTRD_SOCK" -n "$NS" "$@"; }

# snapshots by kind from our daemon's metrics: "active view committed"
sn_counts() {
  curl -fsS "http://127.0.0.1:$METRICS_PORT/v1/metrics" |
    awk '/^snapshotter_snapshots\{kind="active"\}/ {a=$2} /^snapshotter_snapshots\{kind="view"\}/ {v=$2}
         /^snapshotter_snapshots\{kind="committed"\}/ {c=$2} END {print a+0, v+0, c+0}'
}

counts_are() { [ "$(sn_counts)" = "$1" ]; }  # "active view committed"

# One dir per live snapshot, nothing else under snapshots/.
dirs_match_store() {
  local total dirs odd
  total=$(sn_counts | awk '{print $1+$2+$3}')
  dirs=$(find "$SN_ROOT/snapshots" -mindepth 1 -maxdepth 1 | wc -l)
  odd=$(find "$SN_ROOT/snapshots" -mindepth 1 -maxdepth 1 ! -regex '.*/[1-9][0-9]*' | wc -l)
  [ "$dirs" = "$total" ] && [ "$odd" = 0 ]
}

# The store and the directories agree. containerd's GC removes snapshots
# and then calls Cleanup asynchronously, so this waits (bounded) for that
# pass to settle before it judges.
check_consistent() {
  wait_for "snapshot dirs to match the store ($(sn_counts) a/v/c; $(ls "$SN_ROOT/snapshots" | tr '\n' ' '))" \
    dirs_match_store
  for d in "$SN_ROOT"/snapshots/*; do
    [ -e "$d" ] || continue
    [ -d "$d/fs" ] || fail "$d has no fs dir"
  done
  log "consistent: active/view/committed $(sn_counts), one dir each"
}

IMAGE=$REG/rfs-it/busybox:1
push_test_image() {
  python3 "$IT_LIB/make_oci_image.py" "$W/image.tar" "$IMAGE" /bin/busybox
  ctr --address "$CTRD_SOCK" -n rfs-it-build images import --no-unpack "$W/image.tar" >/dev/null
  ctr --address "$CTRD_SOCK" -n rfs-it-build images push --plain-http "$IMAGE" >/dev/null
  ctr --address "$CTRD_SOCK" -n rfs-it-build images rm --sync "$IMAGE" >/dev/null
}

# A RAFS image built with `rafs build` (busybox, a small file, a 300 KB file
# and 48 MiB nobody reads), pushed in the nydus layout. Sets LAZY (its
# reference), LAZY_SIZE (bytes of its layers) and WANT_MEDIUM (md5 of
# /data/medium).
push_lazy_image() {
  log "build a RAFS image: busybox, small files, 48 MiB nobody reads"
  local src=$W/src
  mkdir -p "$src/bin" "$src/etc" "$src/data" "$src/tmp"
  cp /bin/busybox "$src/bin/busybox"
  echo "hello from a lazy image" >"$src/etc/hello"
  head -c 48M /dev/urandom >"$src/data/big"
  head -c 300000 /dev/urandom >"$src/data/medium"
  WANT_MEDIUM=$(md5sum <"$src/data/medium" | cut -d' ' -f1)
  mkdir -p "$W/blobs"
  "$BUILD/cmd/rafs" build "$src" --bootstrap "$W/image.boot" --blob-dir "$W/blobs" >/dev/null
  LAZY=$REG/rfs-it/lazy:1
  LAZY_SIZE=$(python3 "$IT_LIB/push_nydus_image.py" "$REG" rfs-it/lazy 1 "$W/image.boot" "$W/blobs"/*)
  log "pushed $LAZY: $LAZY_SIZE bytes of layers"
}

# ctr-remote (Debian's stargz-snapshotter package) pulls with containerd's
# unpacker, which passes the layers' annotations and the image reference
# (remote/stargz.reference) as snapshot labels. (containerd 1.6's plain
# `ctr images pull` passes no labels at all.)
rpull_lazy_image() {
  ctr-remote --address "$CTRD_SOCK" -n "$NS" images rpull --plain-http --snapshotter nydus "$LAZY" \
    >"$W/rpull.out" 2>&1 || fail "rpull failed: $(tail -5 "$W/rpull.out")"
}

# RAFS mounts of our daemon.
rafs_mounts() { awk -v d="$SN_ROOT/" '$3 == "fuse.rafs" && index($2, d) == 1' /proc/self/mounts | wc -l; }
