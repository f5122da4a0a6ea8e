#!/usr/bin/env bash
# convert-bench.sh: `rafs convert` of the demo's application image (Debian +
# python3, from this machine's installed packages, pushed as a one-layer
# OCI image) vs `skopeo copy` of the same image, both from and to the same
# loopback docker-registry (each into its own repository), side by side.
#
#   integration/bench/convert-bench.sh BUILD_DIR [ROUNDS]
#
# Each round starts a fresh registry on a new port (so neither tool finds
# the blobs already there, and skopeo's blob-info cache knows no location
# to mount from), pushes the OCI image, then times both tools in turn
# (alternating which goes first). rafs convert runs with --no-cache (the
# full conversion every time). Prints the times, the medians and their
# ratio (target: convert <= 2x skopeo copy), with the CPU time each used
# (the machine's load average is printed per round: on a shared machine the
# CPU-bound convert suffers from contention more than the I/O-bound copy).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lib=$here/../lib
build=$(cd "${1:?usage: convert-bench.sh BUILD_DIR [ROUNDS]}" && pwd)
rounds=${2:-3}
rafs=$build/cmd/rafs
work=$(mktemp -d "${TMPDIR:-/tmp}/rfs-convert-bench.XXXXXX")
reg_pid=
cleanup() {
  if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

start_registry() {
  local port=$1 dir=$2
  mkdir -p "$dir"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
EOF
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  reg_pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "docker-registry did not start" >&2
  exit 1
}
stop_registry() { kill "$reg_pid"; wait "$reg_pid" 2>/dev/null || true; reg_pid=; }

echo "making the application image (Debian's python3 and the packages it needs)"
app=$work/app
/usr/bin/python3 "$lib/debian_rootfs.py" "$app" base-files coreutils libc6 libc-bin bash \
  tzdata python3-minimal python3.11-minimal libpython3.11-minimal libpython3.11-stdlib \
  python3.11 python3 libexpat1 zlib1g libssl3 libffi8 libsqlite3-0 libbz2-1.0 liblzma5 \
  libncursesw6 libtinfo6 libreadline8 libuuid1 media-types >/dev/null
mkdir -p "$app/tmp"
echo "image: $(du -sm "$app" | cut -f1) MiB in $(find "$app" | wc -l) entries; $(nproc) cores"

skopeo_times=() convert_times=() skopeo_cpu=() convert_cpu=()
for round in $(seq "$rounds"); do
  port=$(free_port)
  start_registry "$port" "$work/registry-$round"
  reg=127.0.0.1:$port
  layer=$(python3 "$lib/push_oci_dir.py" "$reg" bench/python oci "$app")
  # /usr/bin/time: wall, user and system seconds of the tool (and children).
  run_skopeo() {
    /usr/bin/time -f '%e %U %S' -o "$work/time" skopeo copy --quiet \
      --src-tls-verify=false --dest-tls-verify=false \
      "docker://$reg/bench/python:oci" "docker://$reg/bench-skopeo/python:oci"
    read -r wall user sys <"$work/time"
    skopeo_times+=("$wall")
    skopeo_cpu+=("$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')")
  }
  run_convert() {
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$rafs" convert \
      "registry://$reg/bench/python:oci" "registry://$reg/bench-rafs/python:rafs" \
      --plain-http --no-cache --quiet --work-dir "$work/convert-$round" >/dev/null
    read -r wall user sys <"$work/time"
    convert_times+=("$wall")
    convert_cpu+=("$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')")
  }
  if [ $((round % 2)) = 1 ]; then run_skopeo; run_convert; else run_convert; run_skopeo; fi
  rafs_bytes=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$reg/v2/bench-rafs/python/manifests/rafs" |
    python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
  printf 'round %d: OCI layer %s bytes, RAFS layers %s bytes; skopeo copy %ss (cpu %ss), rafs convert %ss (cpu %ss); load %s\n' \
    "$round" "$layer" "$rafs_bytes" "${skopeo_times[-1]}" "${skopeo_cpu[-1]}" \
    "${convert_times[-1]}" "${convert_cpu[-1]}" "$(cut -d' ' -f1 /proc/loadavg)"
  stop_registry
  rm -rf "$work/registry-$round" "$work/convert-$round"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ms=$(median "${skopeo_times[@]}")
mc=$(median "${convert_times[@]}")
printf '\n%-28s %12s %12s\n' "" "median wall" "median cpu"
printf '%-28s %11.3fs %11.2fs\n' "skopeo copy (OCI -> OCI)" "$ms" "$(median "${skopeo_cpu[@]}")"
printf '%-28s %11.3fs %11.2fs\n' "rafs convert (OCI -> RAFS)" "$mc" "$(median "${convert_cpu[@]}")"
ratio=$(awk -v c="$mc" -v s="$ms" 'BEGIN {printf "%.2f", c / s}')
printf 'ratio convert / skopeo: %sx (target <= 2x)\n' "$ratio"
