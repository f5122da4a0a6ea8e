#!/usr/bin/env bash
# peer-bench.sh: time from pull start to the first output of
# `python3 -c 'print(1)'` for one Debian+python3 image, in one run:
#
#   overlay  containerd's overlayfs snapshotter, full pull (ctr images pull)
#   stargz   the stargz snapshotter on the eStargz image (ctr-remote rpull)
#   rafs     rafs-snapshotter (proxy plugin "nydus") on the image converted
#            with `rafs convert` (ctr-remote rpull, lazy)
#   rafs-ampSIZE (rafs-amp1M, rafs-amp0)
#            the same image with the daemon's rafs.read_amplify_size (how far
#            an on-demand fetch is widened with the chunks that follow it)
#            set to SIZE instead of its default, to show the trade-off between
#            bytes fetched and round trips (only when the daemon has that
#            key; the ratios against the targets use "rafs", the defaults).
#            MODES="overlay stargz rafs" leaves them out.
# Optional (MODES="... stargz-opt rafs-pf"), workload-profiled images:
#   stargz-opt  the stargz snapshotter on peer-env's `ctr-remote image
#               optimize`d image (files python3 reads first, prefetched)
#   rafs-pf     ours on a one-layer RAFS image of peer-env's rootfs built
#               with `rafs build --prefetch-files` listing the files
#               `python3 -c 'print(1)'` opens (strace in a chroot of that
#               rootfs); the daemon prefetches them at mount (prefetch: table)
#
# each directly from the loopback registry (127.0.0.1:5000) and through the
# throttling proxy (127.0.0.1:5100: 20 ms each way, 200 Mbit/s each way),
# modes and networks interleaved, RUNS runs each, fresh state per run;
# then what our daemon fetched over what the workload read, and our daemon's
# memory with 10 images mounted. Prints a table of medians and ratios.
#
#   integration/bench/peer-bench.sh            (root; BUILD=build/gcc RUNS=5)
#
# How it is put together (and why):
# * ../shared/tools/peer-env.sh provides the test bed: `setup` (packages, the
#   stargz daemon built from Debian's Go sources, the delay proxy) and
#   `images` (debootstrap Debian bookworm + python3 in two layers, pushed as
#   peer/debian:plain and, converted by ctr-remote, peer/debian:esgz). This
#   script runs them when their results are missing.
# * peer-env's containerd knows one proxy snapshotter only. This script stops
#   whatever peer-env left running (`peer-env.sh stop`, data kept) and starts
#   its own set under $PEER_DIR/rfs-bench: peer-env's registry config and data
#   (access log on: registry bytes are counted from it), the delay proxy,
#   containerd with both proxy plugins (stargz and nydus) and the built-in
#   overlayfs, the stargz daemon peer-env built, and our daemon. One
#   containerd serves all three modes, so they differ only in the snapshotter.
# * Fresh state per run: tasks killed, containerd, the stargz daemon and our
#   daemon stopped, everything below the state dir unmounted and deleted
#   (content store, snapshots, stargz cache, our chunk cache), then all three
#   started again and `sync`ed. The registry's blobs stay in the page cache
#   for every mode alike.
# * The RAFS image: `rafs convert registry://.../peer/debian:plain
#   registry://.../peer/debian:rafs --plain-http`. For the memory figure,
#   10 images: peer/debian:plain plus one small distinct layer each
#   (/etc/bench-image), converted the same way (their base layers convert
#   once and are shared, as on a real node); a container of each is started
#   and left running, then VmRSS/VmHWM of rafs-snapshotter is read.
#
# Also per lazy run: registry bytes and requests (the registry's access log),
# TCP connections through the proxy, what our daemon fetched (compressed) and
# the uncompressed chunk data that became (its fresh chunk cache), bytes read
# through FUSE, FUSE requests by operation. The binaries are copied first, so
# a rebuild in BUILD during the run does not mix versions; converted layers
# are cached for the run only.
#
# Everything listens on 127.0.0.1 or unix sockets under $PEER_DIR; every
# process started here is stopped at the end (by pid) and every mount below
# $PEER_DIR/rfs-bench is removed. Results: $PEER_DIR/rfs-bench/results/.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "peer-bench: needs root" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${BUILD:-$REPO/build/gcc}" && pwd)
RAFS=$BUILD/cmd/rafs
DAEMON=$BUILD/cmd/rafs-snapshotter
PEER_ENV=${PEER_ENV:-$REPO/../shared/tools/peer-env.sh}
export PEER_DIR=${PEER_DIR:-/tmp/peer}
PEER=$PEER_DIR
B=$PEER/rfs-bench
RUNS=${RUNS:-5}
MEM_IMAGES=${MEM_IMAGES:-10}
DELAY_MS=20
RATE_MBIT=200
REG=127.0.0.1:5000
PROXY=127.0.0.1:5100
SYSPY=/usr/bin/python3
VOL=$B/vol
CTRD_SOCK=$B/containerd.sock
STARGZ_SOCK=$B/stargz.sock
RAFS_SOCK=$B/rafs.sock
METRICS=127.0.0.1:${METRICS_PORT:-9119}
NS=bench
WORKLOAD=(/usr/bin/python3 -c 'print(1)')
MODES=${MODES:-overlay stargz rafs rafs-amp1M rafs-amp0}
if ! "$DAEMON" --print-default-config 2>/dev/null | grep -q read_amplify_size; then
  MODES=$(tr ' ' '\n' <<<"$MODES" | grep -v '^rafs-amp' | tr '\n' ' ')
fi
declare -A PIDS=()

log() { printf '[peer-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
ctr_() { ctr --address "$CTRD_SOCK" -n "$NS" "$@"; }
now_ns() { date +%s%N; }
for c in containerd ctr ctr-remote runc docker-registry skopeo umoci curl jq; do
  command -v "$c" >/dev/null || die "missing $c: run 'bash $PEER_ENV setup'"
done
[ -x "$RAFS" ] && [ -x "$DAEMON" ] || die "build rafs and rafs-snapshotter first (ninja -C $BUILD rafs rafs-snapshotter)"
# The binaries are copied first: a rebuild in $BUILD during the run does not
# mix versions.
mkdir -p "$B/bin"
cp "$RAFS" "$B/bin/rafs"; cp "$DAEMON" "$B/bin/rafs-snapshotter"
RAFS=$B/bin/rafs
DAEMON=$B/bin/rafs-snapshotter
"$RAFS" convert --help >/dev/null 2>&1 || die "$RAFS has no 'convert' command"

# ------------------------------------------------------------ processes ----
wait_for() {  # what, command...
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "timed out waiting for $what"
}
start_bg() {  # name log command...
  local name=$1 logf=$2; shift 2
  setsid "$@" >>"$logf" 2>&1 </dev/null &
  PIDS[$name]=$!
}
stop_bg() {  # name
  local p=${PIDS[$1]:-}
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset "PIDS[$1]"
}
umount_below() {  # deepest first
  awk -v d="$1/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}
kill_tasks() {
  [ -n "${PIDS[containerd]:-}" ] || return 0
  local t
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
  for t in $(ctr_ containers ls -q 2>/dev/null); do
    ctr_ tasks delete --force "$t" >/dev/null 2>&1 || true
    ctr_ containers rm "$t" >/dev/null 2>&1 || true
  done
}
stop_runtime() {
  kill_tasks
  stop_bg containerd
  # runc shims of this containerd (they name its socket on their command line)
  local p
  for p in $(pgrep -f -- "-address $CTRD_SOCK" 2>/dev/null || true); do kill -KILL "$p" 2>/dev/null || true; done
  stop_bg rafs
  stop_bg stargz
  umount_below "$VOL"
}
cleanup() {
  local rc=$?
  set +e
  stop_runtime
  stop_bg proxy
  stop_bg registry
  umount_below "$B"
  rm -rf "$VOL"
  [ $rc = 0 ] || log "failed (rc $rc); logs in $B/logs"
  exit $rc
}

write_configs() {
  mkdir -p "$B/logs" "$B/results"
  cat >"$B/containerd.toml" <<EOF
version = 2
root = "$VOL/containerd-root"
state = "$VOL/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[proxy_plugins]
  [proxy_plugins.stargz]
    type = "snapshot"
    address = "$STARGZ_SOCK"
  [proxy_plugins.nydus]
    type = "snapshot"
    address = "$RAFS_SOCK"
EOF
  cat >"$B/stargz.toml" <<EOF
# the stargz snapshotter's defaults (background fetch and verification on)
EOF
  write_rafs_config ""
}
write_rafs_config() {  # extra keys under rafs: ("" = the defaults)
  cat >"$B/rafs-snapshotter.yaml" <<EOF
root: $VOL/rafs-root
address: $RAFS_SOCK
containerd_address: $CTRD_SOCK
log: {level: info}
metrics: {address: "$METRICS"}
rafs: {keep_mounts: false${1:+, $1}}
registry: {plain_http: ["$REG", "$PROXY"], docker_config: "$B/no-docker-config.json"}
EOF
}

start_registry_and_proxy() {
  [ -f "$PEER/registry/config.yml" ] || die "no $PEER/registry/config.yml: run 'bash $PEER_ENV setup' and 'images'"
  grep -q 'accesslog' "$PEER/registry/config.yml" || die "the registry config has no access log"
  start_bg registry "$B/logs/registry.log" docker-registry serve "$PEER/registry/config.yml"
  wait_for "registry on $REG" curl -fsS "http://$REG/v2/"
  start_bg proxy "$B/logs/proxy.log" "$SYSPY" "$PEER/bin/delay-proxy.py" 5100 5000 "$DELAY_MS" "$RATE_MBIT"
  wait_for "delay proxy on $PROXY" curl -fsS "http://$PROXY/v2/"
}
start_runtime() {
  mkdir -p "$VOL/stargz-root"
  start_bg stargz "$B/logs/stargz.log" "$PEER/bin/containerd-stargz-grpc" --address "$STARGZ_SOCK" \
    --root "$VOL/stargz-root" --config "$B/stargz.toml" --log-level info
  start_bg rafs "$B/logs/rafs-snapshotter.log" "$DAEMON" --config "$B/rafs-snapshotter.yaml"
  wait_for "stargz socket" test -S "$STARGZ_SOCK"
  wait_for "rafs-snapshotter health" curl -fsS "http://$METRICS/healthz"
  start_bg containerd "$B/logs/containerd.log" containerd --config "$B/containerd.toml"
  wait_for "containerd" ctr --address "$CTRD_SOCK" version
}
reset_runtime() {  # fresh content store, snapshots and caches
  stop_runtime
  rm -rf "$VOL"
  start_runtime
  sync
}

# -------------------------------------------------------------- images ----
manifest_of() {  # host repo tag
  curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$1/v2/$2/manifests/$3"
}
layer_bytes() { manifest_of "$REG" "$1" "$2" | jq '[.layers[].size] | add'; }

prepare_images() {
  if [ ! -x "$PEER/bin/containerd-stargz-grpc" ] || [ ! -x "$PEER/bin/delay-proxy.py" ]; then
    log "peer-env setup (packages, stargz daemon, delay proxy)"
    bash "$PEER_ENV" setup
  fi
  bash "$PEER_ENV" stop >/dev/null 2>&1 || true
  if [ -f "$PEER/registry/config.yml" ]; then start_registry_and_proxy; fi
  if ! manifest_of "$REG" peer/debian plain >/dev/null 2>&1 || ! manifest_of "$REG" peer/debian esgz >/dev/null 2>&1; then
    stop_bg proxy; stop_bg registry
    log "peer-env images (debootstrap, push plain + eStargz)"
    bash "$PEER_ENV" images
    bash "$PEER_ENV" stop >/dev/null 2>&1 || true
    start_registry_and_proxy
  fi
  rm -rf "$B/convert-cache"  # layers converted by an older rafs are not reused
  log "rafs convert $REG/peer/debian:plain -> :rafs"
  "$RAFS" convert "registry://$REG/peer/debian:plain" "registry://$REG/peer/debian:rafs" --plain-http \
    --cache-dir "$B/convert-cache" --quiet
  if [[ " $MODES " == *" rafs-pf "* ]]; then build_prefetch_image; fi
  local i lay=$B/oci-variants tmp=$B/tmp
  if [ "${SKIP_MEMORY:-0}" != 1 ]; then
    log "$MEM_IMAGES distinct images for the memory figure (peer/debian:plain + one small layer each)"
    rm -rf "$lay" "$tmp"; mkdir -p "$tmp/etc"
    cp -a "$PEER/oci/debian" "$lay"
    for i in $(seq 1 "$MEM_IMAGES"); do
      echo "bench image $i" >"$tmp/etc/bench-image"
      tar -C "$tmp" --numeric-owner -cf "$tmp/l.tar" ./etc/bench-image
      umoci tag --image "$lay:latest" "m$i"
      umoci raw add-layer --image "$lay:m$i" "$tmp/l.tar"
      skopeo copy --quiet --dest-tls-verify=false "oci:$lay:m$i" "docker://$REG/peer/debian:oci-m$i"
      "$RAFS" convert "registry://$REG/peer/debian:oci-m$i" "registry://$REG/peer/debian:rafs-m$i" \
        --plain-http --cache-dir "$B/convert-cache" --quiet
    done
    rm -rf "$lay" "$tmp"
  fi
}

# The files the workload opens, as real paths inside the rootfs.
build_prefetch_image() {
  local root=$PEER/rootfs/debian p r
  command -v strace >/dev/null || die "rafs-pf needs strace"
  [ -x "$root/usr/bin/python3" ] || die "no rootfs at $root: run 'bash $PEER_ENV images'"
  log "rafs build of $root with the files python3 opens as prefetch list -> :rafs-pf"
  strace -f -qq -e trace=openat -o "$B/workload.strace" chroot "$root" "${WORKLOAD[@]}" >/dev/null
  { echo "${WORKLOAD[0]}"
    grep -v ENOENT "$B/workload.strace" | grep -oE 'openat\(AT_FDCWD, "[^"]+"' | sed -E 's/.*"([^"]+)"/\1/'
  } | sort -u | while read -r p; do
    r=$(chroot "$root" readlink -f "$p") || continue
    if [ -f "$root$r" ]; then echo "$r"; fi
  done | sort -u >"$B/prefetch-files"
  log "prefetch list: $(wc -l <"$B/prefetch-files") files, $(cd "$root" && sed 's|^/||' "$B/prefetch-files" | xargs du -cb | tail -1 | cut -f1) bytes"
  rm -rf "$B/pf"; mkdir -p "$B/pf/blobs"
  "$RAFS" build "$root" --prefetch-files "$B/prefetch-files" --bootstrap "$B/pf/image.boot" \
    --blob-dir "$B/pf/blobs" >/dev/null
  "$SYSPY" "$REPO/integration/lib/push_nydus_image.py" "$REG" peer/debian rafs-pf "$B/pf/image.boot" \
    "$B/pf/blobs"/* >/dev/null
  rm -rf "$B/pf"
}

# ----------------------------------------------------------------- runs ----
reg_mark() { stat -c %s "$B/logs/registry.log"; }
proxy_conns() {  # TCP connections the delay proxy has accepted so far
  kill -USR1 "${PIDS[proxy]}"
  sleep 0.2
  awk '/^stats / {c = $4} END {sub("conns=", "", c); print c + 0}' "$B/logs/proxy.log"
}
reg_bytes() {  # bytes and requests the registry answered after offset $1 (GET/HEAD /v2/)
  tail -c +"$(($1 + 1))" "$B/logs/registry.log" | awk '
    / "(GET|HEAD) \/v2\/[^ ]* HTTP\/1\.[01]" / {
      for (i = 1; i <= NF; i++) if ($i ~ /^HTTP\/1\.[01]"$/) { if ($(i+2) ~ /^[0-9]+$/) s += $(i+2); n++ } }
    END { printf "%d %d\n", s, n }'
}
metric_sum() {  # regex of metric lines in $1 (a metrics text file)
  awk -v re="$2" '$0 ~ re {s += $NF} END {printf "%d\n", s}' "$1"
}

one_run() {  # run net mode
  local run=$1 net=$2 mode=$3 host=$REG sn ref t0 t1 first t3 mark bytes reqs line c0 c1
  [ "$net" = shaped ] && host=$PROXY
  case $mode in
    overlay) sn=overlayfs; ref=$host/peer/debian:plain ;;
    stargz)  sn=stargz;    ref=$host/peer/debian:esgz ;;
    stargz-opt) sn=stargz; ref=$host/peer/debian:esgz-opt ;;
    rafs-pf) sn=nydus;     ref=$host/peer/debian:rafs-pf ;;
    rafs)    sn=nydus;     ref=$host/peer/debian:rafs ;;
    rafs-amp*) sn=nydus;   ref=$host/peer/debian:rafs ;;
  esac
  case $mode in
    rafs-amp*) write_rafs_config "read_amplify_size: \"${mode#rafs-amp}\"" ;;
    *)         write_rafs_config "" ;;
  esac
  reset_runtime
  mark=$(reg_mark)
  c0=$(proxy_conns)
  t0=$(now_ns)
  case $mode in
    overlay) ctr_ images pull --plain-http --snapshotter overlayfs "$ref" >"$B/logs/pull.out" 2>&1 ;;
    *)       ctr-remote --address "$CTRD_SOCK" -n "$NS" images rpull --plain-http --snapshotter "$sn" "$ref" \
               >"$B/logs/pull.out" 2>&1 ;;
  esac || { tail -5 "$B/logs/pull.out" >&2; die "$mode pull of $ref failed"; }
  t1=$(now_ns)
  # time of the first line the container prints
  first=$( { ctr_ run --rm --snapshotter "$sn" "$ref" "bench-$run-$net-$mode" "${WORKLOAD[@]}" 2>&1; } | {
             IFS= read -r l; date +%s%N; printf '%s\n' "$l" >"$B/results/first-line"; cat >/dev/null; } )
  t3=$(now_ns)
  line=$(cat "$B/results/first-line")
  [ "$line" = 1 ] || die "$mode/$net: the container printed '$line', not 1"
  read -r bytes reqs < <(reg_bytes "$mark")
  c1=$(proxy_conns)
  local fetched=0 read_b=0 fuse=0 lookups=0 reads=0 backend=0 cached=0
  if [[ $mode == rafs* ]]; then
    local m=$B/results/metrics-$run-$net-$mode.txt st=$B/results/status-$run-$net-$mode.json
    curl -fsS "http://$METRICS/v1/metrics" >"$m"
    curl -fsS "http://$METRICS/v1/status" >"$st"
    # fetched: compressed bytes from the registry; cached: the uncompressed
    # chunk data they became (allocated bytes of the fresh chunk cache)
    read -r fetched read_b cached < <(jq -r '[.images[0].fetched_bytes, .images[0].read_bytes, .cache_bytes] | @tsv' "$st")
    fuse=$(metric_sum "$m" '^rafs_fuse_requests_total[{]')
    lookups=$(metric_sum "$m" '^rafs_fuse_requests_total[{]op="lookup"')
    reads=$(metric_sum "$m" '^rafs_fuse_requests_total[{]op="read"')
    backend=$(metric_sum "$m" '^rfs_storage_backend_requests_total[{]')
    cp "$B/logs/rafs-snapshotter.log" "$B/results/rafs-snapshotter-$run-$net-$mode.log"
  fi
  printf '%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n' "$run" "$net" "$mode" \
    $(((t1 - t0) / 1000000)) $(((first - t0) / 1000000)) $(((t3 - t0) / 1000000)) \
    "$bytes" "$reqs" "$fetched" "$read_b" "$fuse" "$lookups" "$reads" "$backend" $((c1 - c0)) "$cached" |
    tee -a "$B/results/runs.tsv"
}

memory_figure() {
  reset_runtime
  local pid i n rss0
  pid=${PIDS[rafs]}
  rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  for i in $(seq 1 "$MEM_IMAGES"); do
    ctr-remote --address "$CTRD_SOCK" -n "$NS" images rpull --plain-http --snapshotter nydus \
      "$REG/peer/debian:rafs-m$i" >"$B/logs/pull.out" 2>&1 || die "rpull rafs-m$i failed"
    ctr_ run -d --snapshotter nydus "$REG/peer/debian:rafs-m$i" "mem-$i" \
      /bin/sh -c 'python3 -c "print(1)" && cat /etc/bench-image && exec sleep 3600' >/dev/null
  done
  for i in $(seq 1 "$MEM_IMAGES"); do
    wait_for "container mem-$i" bash -c "ctr --address '$CTRD_SOCK' -n '$NS' tasks ls | grep -q '^mem-$i .*RUNNING'"
  done
  sleep 2
  n=$(awk -v d="$VOL/" '$3 == "fuse.rafs" && index($2, d) == 1' /proc/self/mounts | wc -l)
  [ "$n" = "$MEM_IMAGES" ] || die "expected $MEM_IMAGES RAFS mounts, have $n"
  read -r rss hwm < <(awk '/^VmRSS/ {r = $2} /^VmHWM/ {h = $2} END {print r, h}' "/proc/$pid/status")
  curl -fsS "http://$METRICS/v1/status" >"$B/results/status-memory.json"
  printf 'mounts\t%d\trss_kib_before\t%d\trss_kib\t%d\thwm_kib\t%d\n' "$n" "$rss0" "$rss" "$hwm" |
    tee "$B/results/memory.tsv"
}

machine_state() {  # label
  local i0 t0 i1 t1
  read -r i0 t0 < <(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
  sleep 5
  read -r i1 t1 < <(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
  printf '%s: load average %s, CPU idle %d%% over 5 s (%d cores)\n' "$1" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" $(((i1 - i0) * 100 / (t1 - t0))) "$(nproc)" | tee -a "$B/results/machine.txt"
}

summary() {
  "$SYSPY" - "$B/results/runs.tsv" "$B/results/memory.tsv" "$RUNS" "$1" "$2" "$3" <<'EOF'
import csv, os, statistics as st, sys
runs_f, mem_f, runs, plain_b, esgz_b, rafs_b = sys.argv[1:]
rows = list(csv.DictReader(open(runs_f), delimiter="\t"))
g = {}
for r in rows:
    g.setdefault((r["net"], r["mode"]), []).append(r)
amp_modes = sorted({m for _, m in g if m.startswith("rafs-amp")})
med = lambda rs, c: st.median(float(r[c]) for r in rs)
print("medians of %s runs each; times in ms from pull start" % runs)
print("%-7s %-13s %2s %8s %10s %12s %8s %5s %6s" % ("net", "mode", "n", "pull", "1st out", "min..max", "reg MB", "reqs", "conns"))
for net in ("direct", "shaped"):
    for mode in ["overlay", "stargz", "stargz-opt", "rafs", "rafs-pf"] + amp_modes:
        rs = g.get((net, mode), [])
        if not rs:
            continue
        fo = [float(r["first_out_ms"]) for r in rs]
        print("%-7s %-13s %2d %8.0f %10.0f %12s %8.1f %5.0f %6s" % (net, mode, len(rs), med(rs, "pull_ms"),
              st.median(fo), "%.0f..%.0f" % (min(fo), max(fo)), med(rs, "reg_bytes") / 1e6, med(rs, "reg_reqs"),
              "%.0f" % med(rs, "proxy_conns") if net == "shaped" else "-"))
print("image sizes (compressed layers): plain %.1f MB, eStargz %.1f MB, RAFS %.1f MB" %
      (int(plain_b) / 1e6, int(esgz_b) / 1e6, int(rafs_b) / 1e6))
t = lambda net, mode: st.median(float(r["first_out_ms"]) for r in g[(net, mode)])
print()
print("%-62s %12s %8s" % ("", "result", "target"))
def line(name, v, target):
    print("%-62s %12s %8s" % (name, v, target))
def ratio(name, a, b, target=""):
    if a in g and b in g:
        line(name, "%.2fx" % (t(*a) / t(*b)), target)
for mode, what in [("rafs", "ours"), ("rafs-pf", "ours, prefetch list")] + [(m, "read_amplify_size=" + m[len("rafs-amp"):]) for m in amp_modes]:
    ratio("%s vs overlayfs, throttled (overlay / ours)" % what, ("shaped", "overlay"), ("shaped", mode), ">= 5x")
    ratio("%s vs overlayfs, direct (overlay / ours)" % what, ("direct", "overlay"), ("direct", mode))
    ratio("%s vs stargz, throttled (stargz / ours)" % what, ("shaped", "stargz"), ("shaped", mode), ">= 1.5x")
    ratio("%s vs stargz, direct (stargz / ours)" % what, ("direct", "stargz"), ("direct", mode), ">= 1.5x")
    ratio("%s vs stargz optimized, throttled" % what, ("shaped", "stargz-opt"), ("shaped", mode))
    ratio("%s vs stargz optimized, direct" % what, ("direct", "stargz-opt"), ("direct", mode))
    rs = [r for k, v in g.items() if k[1] == mode for r in v]
    if rs:
        f, rd = st.median(float(r["fetched"]) for r in rs), st.median(float(r["read"]) for r in rs)
        line("%s: fetched / read by the workload" % what, "%.2fx" % (f / rd), "<= 1.2x")
        line("  (fetched %.2f MB compressed, read %.2f MB through FUSE)" % (f / 1e6, rd / 1e6), "", "")
        c = st.median(float(r["cached"]) for r in rs)
        line("  uncompressed chunks fetched (%.2f MB) / read" % (c / 1e6), "%.2fx" % (c / rd), "")
        line("  registry bytes of the lazy pull+run / read", "%.2fx" % (st.median(float(r["reg_bytes"]) for r in rs) / rd), "")
if os.path.exists(mem_f):
    m = open(mem_f).read().split()
    d = dict(zip(m[0::2], m[1::2]))
    line("daemon memory, %s images mounted: VmRSS" % d["mounts"], "%.1f MiB" % (int(d["rss_kib"]) / 1024), "")
    line("  VmHWM / VmRSS before any image", "%.1f / %.1f MiB" % (int(d["hwm_kib"]) / 1024, int(d["rss_kib_before"]) / 1024), "")
print()
for name in ["rafs", "rafs-pf"] + amp_modes:
    rs = [r for k, v in g.items() if k[1] == name for r in v]
    if rs:
        print("%s: FUSE requests per run (median) %.0f, of them LOOKUP %.0f, READ %.0f; registry range requests %.0f" %
              (name, med(rs, "fuse_reqs"), med(rs, "lookups"), med(rs, "reads"), med(rs, "backend_reqs")))
EOF
}

# ----------------------------------------------------------------- main ----
trap cleanup EXIT
mkdir -p "$B"
rm -rf "$B/results"
write_configs
: >"$B/results/machine.txt"
echo "command: BUILD=$BUILD RUNS=$RUNS MODES='$MODES' $0" | tee "$B/results/machine.txt"
echo "source: commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')," \
  "$(git -C "$REPO" status --short --untracked-files=no 2>/dev/null | wc -l) files modified in the work tree;" \
  "binaries built $(date -u -r "$BUILD/cmd/rafs-snapshotter" +%FT%TZ)" | tee -a "$B/results/machine.txt"
prepare_images
machine_state "before"
plain_b=$(layer_bytes peer/debian plain); esgz_b=$(layer_bytes peer/debian esgz); rafs_b=$(layer_bytes peer/debian rafs)
printf 'run\tnet\tmode\tpull_ms\tfirst_out_ms\texit_ms\treg_bytes\treg_reqs\tfetched\tread\tfuse_reqs\tlookups\treads\tbackend_reqs\tproxy_conns\tcached\n' \
  >"$B/results/runs.tsv"
for run in $(seq 1 "$RUNS"); do
  for net in direct shaped; do
    for mode in $MODES; do
      one_run "$run" "$net" "$mode" >/dev/null
      log "run $run $net $mode: $(tail -1 "$B/results/runs.tsv" | cut -f4-10)"
    done
  done
done
[ "${SKIP_MEMORY:-0}" = 1 ] || memory_figure >/dev/null
machine_state "after"
echo
summary "$plain_b" "$esgz_b" "$rafs_b" | tee "$B/results/summary.txt"
