#!/usr/bin/env bash
# The Helm chart test (ctest chart_render):
#
#  1. builds test/chart/render (text/template + sprig + yaml.v3 from Debian's
#     Go packages, GOPATH mode, offline) and renders charts/rafs-snapshotter
#     for the default values, ci/k3s-values.yaml, ci/rke2-values.yaml and a
#     set of non-default values; every document must parse, have apiVersion,
#     kind and metadata.name and be valid for its kind (field names and
#     types, selector vs labels, mounts vs volumes, probes vs ports); every
#     key of values.yaml must carry a comment;
#  2. the daemon config in the rendered ConfigMap must load:
#     rafs-snapshotter --check-config --config <it>;
#  3. the init step (files/configure-containerd.sh, the text the chart ships)
#     is run against containerd configs: containerd's own default, a missing
#     file, the docs' snippets, a version 3 file, a k3s template; results
#     are loaded by the real containerd (`containerd --config X config dump`,
#     version 2) or parsed as TOML (version 3, which this containerd does not
#     read), a second run changes nothing, containerd is restarted only when
#     asked and only after a change;
#  4. the checks themselves fail on broken input (a misspelled field, a probe
#     naming an undeclared port, an invalid daemon config, a duplicate TOML
#     table);
#  5. the pod's scripts run as the kubelet would run them: the fd keeper
#     sidecar until its startup probe passes, the daemon loop until its
#     readiness probe passes; the daemon uses the sidecar's keeper, comes
#     back after kill -9, and both stop on SIGTERM;
#  6. as root: the image the chart runs is built
#     (cmd/rafs-snapshotter/build-image.sh) and every program the manifests
#     name, the scripts' tools, the config, the init step and the fd keeper
#     work inside it (chroot).
#
# kubectl is not used: its client-side dry run (create/apply
# --dry-run=client, with or without --validate=false) needs an API server
# for discovery and fails offline, so the per-kind checks are the
# renderer's own (test/chart/render/checks.go).
#
# usage: chart_test.sh RAFS_SNAPSHOTTER_BINARY [WORK_DIR]
# RFS_CHART_IMAGE=0 leaves out part 6 (ctest sets it for sanitized builds).
# Exit 77 (skipped) only when no Go toolchain is installed.
set -eEuo pipefail
trap 'echo "FAIL: chart test stopped by an unexpected error at line $LINENO"' ERR

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
chart=$top/charts/rafs-snapshotter
daemon=${1:?usage: chart_test.sh RAFS_SNAPSHOTTER_BINARY [WORK_DIR]}
work=${2:-}

if ! command -v go >/dev/null 2>&1; then
  echo "SKIP: no Go toolchain (go) installed; the Debian package golang-go provides it"
  exit 77
fi
for pkg in github.com/Masterminds/sprig gopkg.in/yaml.v3; do
  if [ ! -d "/usr/share/gocode/src/$pkg" ]; then
    echo "FAIL: /usr/share/gocode/src/$pkg is missing (.ci/setup installs golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev)"
    exit 1
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -n "$work" ] || work=$tmp/work
mkdir -p "$work"

fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# 1. The renderer, built offline from Debian's Go sources.
gopath=$tmp/gopath
mkdir -p "$gopath/src"
cp -r "$here/render" "$gopath/src/chart-render"
(cd "$gopath/src/chart-render" &&
  env GOPATH="$gopath:/usr/share/gocode" GO111MODULE=off GOFLAGS= GOPROXY=off \
    GOCACHE="$work/gocache" go build -o "$tmp/chart-render" .)
render=$tmp/chart-render

# Non-default values: every template branch the defaults do not take.
cat >"$tmp/other-values.yaml" <<'EOF'
fullnameOverride: rafs
registryCredentialsSecret: registry-creds
restartInPlace: false
fdKeeper:
  enabled: false
updateStrategy:
  type: RollingUpdate
  rollingUpdate:
    maxUnavailable: 1
    maxSurge: 0
probes:
  liveness:
    enabled: true
containerd:
  configVersion: 2
  restart: true
commonLabels:
  team: storage
podAnnotations:
  example.com/scrape: "true"
nodeSelector:
  node-role.example/lazy: "true"
extraVolumes:
  - name: registry-ca
    secret:
      secretName: registry-ca
extraVolumeMounts:
  - name: registry-ca
    mountPath: /etc/rafs-snapshotter/ca
    readOnly: true
config:
  metrics:
    address: "0.0.0.0:9111"
  rafs:
    cache_dir: /var/cache/rafs-snapshotter
    cache_max_size: 20G
    prefetch: all
  registry:
    plain_http: ["127.0.0.1:5000"]
    ca_file: /etc/rafs-snapshotter/ca/ca.crt
  log:
    format: json
EOF

if "$render" --check-values-comments "$chart" >/dev/null; then
  ok "values.yaml: every key is documented"
else
  bad "values.yaml: keys without a comment"
fi

for case in default k3s rke2 other; do
  args=()
  case $case in
    k3s) args=(-f "$chart/ci/k3s-values.yaml") ;;
    rke2) args=(-f "$chart/ci/rke2-values.yaml") ;;
    other) args=(-f "$tmp/other-values.yaml") ;;
  esac
  out=$tmp/$case.yaml
  if ! "$render" --check "${args[@]}" --out "$out" --config-out "$tmp/$case-config.yaml" "$chart"; then
    bad "render $case: invalid manifests (above)"
    continue
  fi
  kinds=$(grep -E '^kind: ' "$out" | sort | tr '\n' ' ')
  if [ "$kinds" != "kind: ConfigMap kind: DaemonSet kind: ServiceAccount " ]; then
    bad "render $case: kinds are [$kinds]"
    continue
  fi
  ok "render $case: $(grep -c '^---' "$out") documents valid for their kinds"
  # 2. The daemon accepts the config the ConfigMap holds.
  if msg=$("$daemon" --check-config --config "$tmp/$case-config.yaml" 2>&1); then
    ok "render $case: rafs-snapshotter --check-config: $msg"
  else
    bad "render $case: the daemon rejects the ConfigMap's config: $msg"
  fi
done

# What the values must have changed.
expect() {  # file, grep pattern, what
  if grep -qE -- "$2" "$1"; then ok "$3"; else bad "$3: no /$2/ in $(basename "$1")"; fi
}
expect_not() {
  if grep -qE -- "$2" "$1"; then bad "$3: /$2/ in $(basename "$1")"; else ok "$3"; fi
}
expect "$tmp/default.yaml" 'name: fd-keeper' "default: the fd keeper runs as a sidecar"
expect "$tmp/default.yaml" '^      priorityClassName: system-node-critical' "default: system-node-critical"
expect "$tmp/default.yaml" 'type: OnDelete' "default: OnDelete update strategy"
expect_not "$tmp/default.yaml" '^ *hostPID:' "default: no hostPID without a containerd restart"
expect "$tmp/k3s.yaml" 'value: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl"' "k3s: config template path"
expect "$tmp/k3s.yaml" 'path: /run/k3s/containerd$' "k3s: containerd socket directory mounted"
expect "$tmp/rke2.yaml" 'value: "/var/lib/rancher/rke2/agent/etc/containerd/config.toml.tmpl"' "rke2: config template path"
expect "$tmp/rke2.yaml" 'hostPID: true' "rke2: hostPID for the containerd restart"
expect "$tmp/other.yaml" 'containerPort: 9111' "other: metrics port from config.metrics.address"
expect "$tmp/other.yaml" 'path: /var/cache/rafs-snapshotter' "other: a cache dir outside the root is mounted"
expect "$tmp/other.yaml" 'docker_config: /etc/rafs-snapshotter/docker/config.json' "other: registry secret used as docker_config"
expect_not "$tmp/other.yaml" 'name: fd-keeper' "other: no sidecar when fdKeeper.enabled is false"
expect "$tmp/other-config.yaml" 'plain_http:' "other: registry settings reach the config"

# 4a. The checks fail on broken charts and configs.
broken() {  # description, sed expression on the daemonset template
  rm -rf "$tmp/broken" && cp -r "$chart" "$tmp/broken"
  sed -i "$2" "$tmp/broken/templates/daemonset.yaml"
  if "$render" --check --out /dev/null "$tmp/broken" 2>"$tmp/broken.err"; then
    bad "a chart with $1 passes the check"
  else
    ok "a chart with $1 fails the check: $(sed 's/^chart-render: //' "$tmp/broken.err" | head -1)"
  fi
}
broken "a misspelled field" 's/mountPropagation:/mountPropogation:/'
broken "a probe naming an undeclared port" 's/- name: metrics/- name: prom/'
broken "a mount of a missing volume" '0,/- name: dev-fuse$/s//- name: dev-fuze/'
broken "an unquoted number in an env value" 's/value: {{ .Values.containerd.restart | toString | quote }}/value: 1/'
printf 'config:\n  rafs:\n    prefetch: sometimes\n' >"$tmp/bad-values.yaml"
"$render" -f "$tmp/bad-values.yaml" --out /dev/null --config-out "$tmp/bad-config.yaml" "$chart"
if "$daemon" --check-config --config "$tmp/bad-config.yaml" >/dev/null 2>&1; then
  bad "the daemon accepts rafs.prefetch: sometimes"
else
  ok "the daemon rejects a bad value in the ConfigMap's config"
fi

# 3. The init step against containerd configs.
script=$chart/files/configure-containerd.sh
bin=$tmp/bin
mkdir -p "$bin"
# nsenter stand-in: records the restart instead of restarting anything.
cat >"$bin/nsenter" <<EOF
#!/bin/sh
echo "\$*" >>"$tmp/restarts"
EOF
chmod +x "$bin/nsenter"

configure() {  # config file, extra env...: the init step's exit status
  local f=$1
  shift
  env PATH="$bin:$PATH" CONFIG_FILE="$f" "$@" sh "$script" 2>>"$tmp/configure.log"
}
run_configure() {  # the same, failing the test when the step fails
  configure "$@" || bad "the init step failed on $1 (its log is below)"
}
dump_ok() {  # config file, what: containerd loads it with nydus in place
  local d
  if ! d=$(containerd --config "$1" config dump 2>&1); then
    bad "$2: containerd rejects the result: $(echo "$d" | tail -1)"
    return
  fi
  if grep -q '^  \[proxy_plugins.nydus\]' <<<"$d" &&
    grep -q 'address = "/run/containerd-nydus/containerd-nydus-grpc.sock"' <<<"$d"; then
    ok "$2: containerd loads it, proxy plugin nydus present"
  else
    bad "$2: containerd's config dump has no proxy plugin nydus"
  fi
  if [ "${3:-cri}" = cri ]; then
    if grep -q 'snapshotter = "nydus"' <<<"$d" &&
      grep -q 'disable_snapshot_annotations = false' <<<"$d"; then
      ok "$2: CRI snapshotter nydus with annotations"
    else
      bad "$2: CRI settings missing from containerd's config dump"
    fi
  fi
}
idempotent() {  # config file, what, env...
  local f=$1 what=$2
  shift 2
  cp "$f" "$tmp/before-second-run"
  run_configure "$f" "$@"
  if cmp -s "$f" "$tmp/before-second-run"; then
    ok "$what: a second run changes nothing"
  else
    bad "$what: a second run changed the file"
  fi
}
toml_check() {  # file, python expression over `c` (the parsed TOML), what
  if /usr/bin/python3 - "$1" "$2" <<'EOF' 2>"$tmp/toml.err"; then
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    c = tomllib.load(f)
assert eval(sys.argv[2]), sys.argv[2]
EOF
    ok "$3"
  else
    bad "$3: $(tail -1 "$tmp/toml.err")"
  fi
}

if command -v containerd >/dev/null 2>&1; then
  # containerd's own full default config (version 2 here).
  c=$tmp/c1/config.toml
  mkdir -p "$(dirname "$c")"
  containerd config default >"$c"
  cp "$c" "$tmp/c1-orig"
  run_configure "$c"
  dump_ok "$c" "containerd's default config"
  idempotent "$c" "containerd's default config"
  if cmp -s "$c.rafs-snapshotter.orig" "$tmp/c1-orig"; then
    ok "containerd's default config: the original is kept as config.toml.rafs-snapshotter.orig"
  else
    bad "containerd's default config: no copy of the original"
  fi
  if [ "$(grep -c 'snapshotter = ' "$c")" = "$(grep -c 'snapshotter = ' "$tmp/c1-orig")" ]; then
    ok "containerd's default config: keys replaced in place, not duplicated"
  else
    bad "containerd's default config: snapshotter keys duplicated"
  fi

  # No config file at all: a new one.
  c=$tmp/c2/config.toml
  run_configure "$c"
  dump_ok "$c" "a missing config file"
  idempotent "$c" "a missing config file"

  # The docs' snippet (what users paste): nothing to add.
  c=$tmp/c3/config.toml
  mkdir -p "$(dirname "$c")"
  { echo "version = 2"; cat "$top/docs/containerd/config-v2.toml"; } >"$c"
  cp "$c" "$tmp/c3-orig"
  run_configure "$c"
  dump_ok "$c" "docs/containerd/config-v2.toml"
  if cmp -s "$c" "$tmp/c3-orig"; then
    ok "docs/containerd/config-v2.toml: already complete, left as it is"
  else
    bad "docs/containerd/config-v2.toml: the init step changed it"
  fi

  # Another socket in an existing nydus table: left, with a warning.
  c=$tmp/c13/config.toml
  mkdir -p "$(dirname "$c")"
  printf 'version = 2\n[proxy_plugins]\n  [proxy_plugins."nydus"]\n    type = "snapshot"\n    address = "/run/other.sock"  # old\n' >"$c"
  cp "$c" "$tmp/c13-orig"
  : >"$tmp/c13.log"
  env PATH="$bin:$PATH" CONFIG_FILE="$c" CRI_SNAPSHOTTER=false sh "$script" 2>"$tmp/c13.log" || true
  if cmp -s "$c" "$tmp/c13-orig" && grep -q 'WARNING: its address is /run/other.sock' "$tmp/c13.log"; then
    ok "an existing nydus table with another socket: left as it is, with a warning"
  else
    bad "an existing nydus table with another socket: $(cat "$tmp/c13.log" | tr '\n' ' ')"
  fi

  # Proxy plugin only (criSnapshotter false), CRI table left alone.
  c=$tmp/c4/config.toml
  mkdir -p "$(dirname "$c")"
  containerd config default >"$c"
  run_configure "$c" CRI_SNAPSHOTTER=false
  dump_ok "$c" "proxy plugin only" nocri
  # (captured first: grep -q closing the pipe early fails the pipeline)
  if grep -q 'snapshotter = "overlayfs"' <<<"$(containerd --config "$c" config dump)"; then
    ok "proxy plugin only: the CRI snapshotter stays overlayfs"
  else
    bad "proxy plugin only: the CRI snapshotter was changed"
  fi

  # A file with top-level keys only and no version line (as some packages
  # ship it): containerd would read it as version 1, so the line is added.
  c=$tmp/c10/config.toml
  mkdir -p "$(dirname "$c")"
  printf '# shipped by a package\ndisabled_plugins = []\n' >"$c"
  run_configure "$c"
  if [ "$(head -1 "$c")" = "version = 2" ]; then
    ok "a file without a version line: version = 2 added"
  else
    bad "a file without a version line: first line is $(head -1 "$c")"
  fi
  dump_ok "$c" "a file without a version line"
  # A version 1 file with plugin tables is refused, not half-edited.
  c=$tmp/c11/config.toml
  mkdir -p "$(dirname "$c")"
  printf '[plugins.cri.containerd]\n  snapshotter = "overlayfs"\n' >"$c"
  cp "$c" "$tmp/c11-orig"
  if configure "$c"; then
    bad "a version 1 file with plugin tables was edited"
  elif cmp -s "$c" "$tmp/c11-orig"; then
    ok "a version 1 file with plugin tables: refused with a reason, left as it is"
  else
    bad "a version 1 file with plugin tables: refused but changed"
  fi

  # The same step under busybox (sh, awk, grep...): byte-identical result.
  if [ -x /bin/busybox ]; then
    bb=$tmp/busybox
    mkdir -p "$bb"
    for a in sh awk grep cmp cp mv mkdir dirname rm cat printf; do ln -s /bin/busybox "$bb/$a"; done
    c=$tmp/c12/config.toml
    mkdir -p "$(dirname "$c")"
    containerd config default >"$c"
    env -i PATH="$bb" CONFIG_FILE="$c" "$bb/sh" "$script" 2>>"$tmp/configure.log"
    if cmp -s "$c" "$tmp/c1/config.toml"; then
      ok "busybox sh and awk: the same result as the default shell"
    else
      bad "busybox sh and awk: a different result"
    fi
  fi

  # A broken file is caught (the check can fail).
  printf '\n[proxy_plugins.nydus]\n  type = "snapshot"\n' >>"$c"
  if containerd --config "$c" config dump >/dev/null 2>&1; then
    bad "containerd accepts a duplicate [proxy_plugins.nydus] table: the dump check proves nothing"
  else
    ok "containerd rejects a duplicate table (the dump check can fail)"
  fi
else
  bad "containerd is not installed (.ci/setup installs it): the init step's results are not loaded"
fi

# Version 3 (containerd 2.x): parsed as TOML, checked key by key.
c=$tmp/c5/config.toml
run_configure "$c" CONFIG_VERSION=3
toml_check "$c" 'c["version"] == 3 and c["proxy_plugins"]["nydus"]["address"] == "/run/containerd-nydus/containerd-nydus-grpc.sock" and c["proxy_plugins"]["nydus"]["exports"]["enable_remote_snapshot_annotations"] == "true" and c["plugins"]["io.containerd.cri.v1.images"]["snapshotter"] == "nydus" and c["plugins"]["io.containerd.cri.v1.images"]["disable_snapshot_annotations"] is False' \
  "version 3, missing file: proxy plugin and CRI images settings"
idempotent "$c" "version 3, missing file"
c=$tmp/c6/config.toml
mkdir -p "$(dirname "$c")"
cat >"$c" <<'EOF'
version = 3
root = "/var/lib/containerd"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  disable_snapshot_annotations = true
  # keep this comment
  max_concurrent_downloads = 3

  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'registry.k8s.io/pause:3.10'
EOF
run_configure "$c"
toml_check "$c" 'c["plugins"]["io.containerd.cri.v1.images"]["snapshotter"] == "nydus" and c["plugins"]["io.containerd.cri.v1.images"]["disable_snapshot_annotations"] is False and c["plugins"]["io.containerd.cri.v1.images"]["discard_unpacked_layers"] is False and c["plugins"]["io.containerd.cri.v1.images"]["max_concurrent_downloads"] == 3 and c["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"].startswith("registry.k8s.io/pause") and c["proxy_plugins"]["nydus"]["type"] == "snapshot"' \
  "version 3 file (auto-detected): CRI keys replaced in their table, others kept"
idempotent "$c" "version 3 file"
c=$tmp/c7/config.toml
mkdir -p "$(dirname "$c")"
{ echo "version = 3"; cat "$top/docs/containerd/config-v3.toml"; } >"$c"
cp "$c" "$tmp/c7-orig"
run_configure "$c"
if cmp -s "$c" "$tmp/c7-orig"; then
  ok "docs/containerd/config-v3.toml: already complete, left as it is"
else
  bad "docs/containerd/config-v3.toml: the init step changed it"
fi

# k3s/rke2 template: starts with k3s's base template, then our table.
c=$tmp/c8/config.toml.tmpl
run_configure "$c" CONFIG_VERSION=3 NEW_FILE_HEADER='{{ template "base" . }}' CRI_SNAPSHOTTER=false
if [ "$(head -1 "$c")" = '{{ template "base" . }}' ]; then
  ok "k3s template: starts with the base template"
else
  bad "k3s template: first line is $(head -1 "$c")"
fi
tail -n +2 "$c" >"$tmp/k3s-rest.toml"
toml_check "$tmp/k3s-rest.toml" 'c["proxy_plugins"]["nydus"]["type"] == "snapshot" and "plugins" not in c' \
  "k3s template: the proxy plugin table, no CRI table"
idempotent "$c" "k3s template" CONFIG_VERSION=3 NEW_FILE_HEADER='{{ template "base" . }}' CRI_SNAPSHOTTER=false

# Restart only when asked and only after a change.
rm -f "$tmp/restarts"
c=$tmp/c9/config.toml
run_configure "$c" RESTART=false
[ ! -e "$tmp/restarts" ] && ok "no restart unless asked" || bad "restarted containerd without being asked"
rm -rf "$tmp/c9"
run_configure "$c" RESTART=true RESTART_COMMAND='systemctl restart containerd'
run_configure "$c" RESTART=true RESTART_COMMAND='systemctl restart containerd'
if [ "$(cat "$tmp/restarts" 2>/dev/null)" = "-t 1 -m -u -i -n -p -- /bin/sh -c systemctl restart containerd" ]; then
  ok "restart asked: containerd restarted once (after the change), on the host's PID 1 namespaces"
else
  bad "restart asked: restarts recorded: $(cat "$tmp/restarts" 2>/dev/null | tr '\n' ';')"
fi
rm -rf "$tmp/c9" "$tmp/restarts"
run_configure "$c" RESTART=true RESTART_MARKER="$tmp/c9-marker/changed"
if [ -e "$tmp/c9-marker/changed" ] && [ ! -e "$tmp/restarts" ]; then
  ok "restart asked with a marker (the chart): the marker is left, containerd not restarted here"
else
  bad "restart asked with a marker: marker $(ls "$tmp/c9-marker" 2>/dev/null), restarts $(cat "$tmp/restarts" 2>/dev/null)"
fi

# 5. The pod's own scripts, run as the kubelet would run them (on this host,
# with the binary and config paths mapped): the fd keeper sidecar first,
# until its startup probe passes; then the daemon loop, until its readiness
# probe passes. The daemon must use the sidecar's keeper (not start its
# own), come back after kill -9 in the same "container", and both must stop
# promptly on SIGTERM.
pod=$tmp/pod
mkdir -p "$pod"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'containerd:\n  restart: true\nconfig:\n  root: %s\n  address: %s\n  containerd_address: ""\n  metrics:\n    address: "127.0.0.1:%s"\n' \
  "$pod/root" "$pod/run/sn.sock" "$port" >"$tmp/pod-values.yaml"
"$render" -f "$tmp/pod-values.yaml" --out /dev/null --config-out "$pod/config.yaml" \
  --json-out "$pod/objects.json" "$chart"
/usr/bin/python3 "$here/pod_scripts.py" "$pod" "$daemon"
keepers() { pgrep -f -- "--fd-keeper $pod/root/fd-keeper.sock" | wc -l; }
daemons() { pgrep -f -- "--config $pod/config.yaml" || true; }
ready() { curl -fsS "$(cat "$pod/readiness-url")" >/dev/null 2>&1; }
wait_until() {  # seconds, command...
  local n=$(($1 * 10))
  shift
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
  return 1
}
new_daemon() { local p; p=$(daemons); [ -n "$p" ] && [ "$p" != "$1" ]; }
sh "$pod/keeper.sh" >"$pod/keeper.log" 2>&1 &
kpid=$!
if wait_until 10 sh "$pod/startup-probe.sh"; then
  ok "pod: the fd keeper sidecar passes its startup probe"
else
  bad "pod: the fd keeper sidecar never passes its startup probe: $(tail -2 "$pod/keeper.log")"
fi
# The init step changed containerd's config (its marker in the pod's
# emptyDir); nsenter is the stand-in that records restarts.
mkdir -p "$pod/pod-run"
: >"$pod/pod-run/containerd-config-changed"
rm -f "$tmp/restarts"
(set -a && . "$pod/daemon.env" && set +a && PATH="$bin:$PATH" exec sh "$pod/daemon.sh") \
  >"$pod/daemon.log" 2>&1 &
dpid=$!
if wait_until 20 ready; then
  ok "pod: the daemon passes its readiness probe ($(cat "$pod/readiness-url"))"
else
  bad "pod: the daemon never gets ready: $(tail -3 "$pod/daemon.log")"
fi
restarted_once() {
  [ "$(cat "$tmp/restarts" 2>/dev/null)" = "-t 1 -m -u -i -n -p -- /bin/sh -c systemctl restart containerd" ] &&
    [ ! -e "$pod/pod-run/containerd-config-changed" ]
}
if wait_until 10 restarted_once && [ -S "$pod/run/sn.sock" ]; then
  ok "pod: containerd restarted once from the daemon's container, after the daemon serves; marker gone"
else
  bad "pod: containerd restarts: $(cat "$tmp/restarts" 2>/dev/null | tr '\n' ';'), marker $(ls "$pod/pod-run")"
fi
keeper_clients() { ss -xH state established 2>/dev/null | grep -c " $pod/root/fd-keeper.sock " || true; }
if [ "$(keepers)" = 1 ] && [ "$(keeper_clients)" -ge 1 ]; then
  ok "pod: the daemon is connected to the sidecar's fd keeper (and started none of its own)"
else
  bad "pod: $(keepers) fd keepers, $(keeper_clients) connected"
fi
first=$(daemons)
[ -n "$first" ] && kill -KILL "$first"
if wait_until 20 new_daemon "$first" && wait_until 20 ready && kill -0 "$dpid" 2>/dev/null; then
  ok "pod: after kill -9 the daemon is started again in its container and gets ready"
else
  bad "pod: the daemon did not come back after kill -9: $(tail -3 "$pod/daemon.log")"
fi
grep -q "starting it again" "$pod/daemon.log" || bad "pod: the daemon's restart is not logged"
[ "$(wc -l <"$tmp/restarts")" = 1 ] || bad "pod: containerd restarted again with the daemon"
if [ "$(keepers)" = 1 ] && wait_until 5 eval '[ "$(keeper_clients)" -ge 1 ]'; then
  ok "pod: the restarted daemon is connected to the same fd keeper"
else
  bad "pod: after the restart: $(keepers) fd keepers, $(keeper_clients) connected"
fi
kill -TERM "$dpid"
if wait_until 20 eval "! kill -0 $dpid 2>/dev/null"; then
  rc=0
  wait "$dpid" || rc=$?
  if [ "$rc" = 0 ] && [ -z "$(daemons)" ]; then
    ok "pod: SIGTERM stops the daemon container (status 0, daemon gone)"
  else
    bad "pod: after SIGTERM: status $rc, daemon pids: $(daemons)"
  fi
else
  bad "pod: the daemon container ignores SIGTERM"
fi
kill -TERM "$kpid"
if wait_until 10 eval "! kill -0 $kpid 2>/dev/null" && wait_until 5 eval '[ "$(keepers)" = 0 ]'; then
  ok "pod: SIGTERM stops the fd keeper sidecar"
else
  bad "pod: the fd keeper sidecar does not stop on SIGTERM"
fi
# Whatever is left of them (only after a failure above).
for p in $kpid $dpid $(daemons) $(pgrep -f -- "--fd-keeper $pod/root/fd-keeper.sock"); do
  kill -KILL "$p" 2>/dev/null || true
done

# 6. The image the chart runs (cmd/rafs-snapshotter/build-image.sh): it
# builds, and the chart's commands, scripts and config work inside it.
if [ "${RFS_CHART_IMAGE:-1}" = 0 ]; then
  echo "skip the image checks: RFS_CHART_IMAGE=0 (a sanitized build; the plain build runs them)"
elif [ "$(id -u)" != 0 ] || ! command -v umoci >/dev/null 2>&1; then
  echo "skip the image checks: they need root and umoci (CI runs them)"
else
  rootfs=$tmp/image-rootfs
  if RFS_IMAGE_ROOTFS=$rootfs bash "$top/cmd/rafs-snapshotter/build-image.sh" "$daemon" \
       "$tmp/layout" test >"$tmp/image.log" 2>&1; then
    ok "image: $(tail -1 "$tmp/image.log")"
    if command -v skopeo >/dev/null 2>&1; then
      if grep -q '"PATH=/usr/local/sbin:' <<<"$(skopeo inspect --config "oci:$tmp/layout:test")"; then
        ok "image: an OCI image whose config sets PATH"
      else
        bad "image: skopeo finds no PATH in the image config"
      fi
    fi
    # Every absolute program path the rendered manifests name.
    for p in $(cat "$tmp"/*.yaml | grep -oE '/(usr/)?(local/)?s?bin/[A-Za-z0-9._-]+' | sort -u); do
      if [ -x "$rootfs$p" ]; then ok "image: $p"; else bad "image: no $p, which the chart runs"; fi
    done
    for t in awk grep cmp cp mv mkdir rm cat dirname sleep nsenter printf kill test; do
      chroot "$rootfs" /bin/sh -c "command -v $t" >/dev/null || bad "image: no $t for the chart's scripts"
    done
    ok "image: the tools of the chart's scripts are there"
    cp "$tmp/default-config.yaml" "$rootfs/etc/rafs-snapshotter/config.yaml"
    if chroot "$rootfs" /usr/local/bin/rafs-snapshotter --check-config \
         --config /etc/rafs-snapshotter/config.yaml >/dev/null; then
      ok "image: the daemon runs and loads the ConfigMap's config"
    else
      bad "image: the daemon does not run or rejects the config"
    fi
    mkdir -p "$rootfs/etc/containerd"
    containerd config default >"$rootfs/etc/containerd/config.toml"
    cp "$script" "$rootfs/configure-containerd.sh"
    if chroot "$rootfs" /usr/bin/env CONFIG_FILE=/etc/containerd/config.toml \
         /bin/sh /configure-containerd.sh 2>>"$tmp/configure.log" &&
       cmp -s "$rootfs/etc/containerd/config.toml" "$tmp/c1/config.toml"; then
      ok "image: the init step gives the same result inside the image"
    else
      bad "image: the init step fails or differs inside the image"
    fi
    chroot "$rootfs" /usr/local/bin/rafs-snapshotter --fd-keeper /run/fd-keeper.sock &
    keeper=$!
    for _ in $(seq 50); do [ -S "$rootfs/run/fd-keeper.sock" ] && break; sleep 0.1; done
    if [ -S "$rootfs/run/fd-keeper.sock" ]; then
      ok "image: the fd keeper listens"
    else
      bad "image: the fd keeper does not start"
    fi
    kill "$keeper" 2>/dev/null || true
    wait "$keeper" 2>/dev/null || true
  else
    bad "image: build-image.sh failed: $(tail -3 "$tmp/image.log")"
  fi
fi

if [ "$fail" != 0 ]; then
  echo "--- init step log"
  cat "$tmp/configure.log"
  exit 1
fi
echo "chart test: all checks passed"
