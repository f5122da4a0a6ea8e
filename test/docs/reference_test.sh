#!/usr/bin/env bash
# docs/reference.md lists every config key, every metric (ctest
# docs_reference), and every flag of `rafs-snapshotter --help`: the keys
# come from `rafs-snapshotter --print-default-config`, the metric names from
# the sources (string
# literals passed to the metrics registry, and the daemon's process gauges
# <prefix>_... of cmd/common/metrics_http.cc). Each must appear in the
# reference as `name`.
#
# usage: reference_test.sh RAFS_SNAPSHOTTER_BINARY
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
daemon=${1:?usage: reference_test.sh RAFS_SNAPSHOTTER_BINARY}
ref=$top/docs/reference.md

# Config keys as dotted paths (two levels in this format).
keys=$("$daemon" --print-default-config | awk '
  /^[ \t]*#/ || /^[ \t]*$/ { next }
  /^[a-z_]+:/ { k = $1; sub(/:.*/, "", k); top = k; if ($0 ~ /^[a-z_]+:[ \t]*$/) next; print k; next }
  /^  [a-z_]+:/ { k = $1; sub(/:.*/, "", k); print top "." k }
')
# Metric names: literals registered with GetCounter/GetGauge/GetHistogram
# (the name may be on the line after the call).
metrics=$(grep -rhE -A2 'Get(Counter|Gauge|Histogram)\(' "$top"/base "$top"/storage "$top"/rafs \
            "$top"/snapshotter "$top"/cmd --include='*.cc' --include='*.h' |
          grep -oE '"[a-z][a-z0-9_]*_[a-z0-9_]+"' | tr -d '"' | sort -u)
# Process gauges: prefix "snapshotter" (the daemon's hooks) + suffix.
suffixes=$(grep -oE 'p \+ "_[a-z0-9_]+"' "$top/cmd/common/metrics_http.cc" | grep -oE '_[a-z0-9_]+' | sort -u)
prefix=$(grep -oE 'process_prefix = "[a-z_]+"' "$top/cmd/rafs-snapshotter/config.cc" | grep -oE '"[a-z_]+"' | tr -d '"')
for s in $suffixes; do metrics+=$'\n'"$prefix$s"; done

# Flags, from the usage text.
flags=$("$daemon" --help | grep -oE -- '--[a-z][a-z-]+' | sort -u)

n_keys=$(echo "$keys" | grep -c .)
n_metrics=$(echo "$metrics" | grep -c .)
if [ "$n_keys" -lt 20 ] || [ "$n_metrics" -lt 20 ]; then
  echo "FAIL: found only $n_keys config keys and $n_metrics metrics: the extraction is broken"
  exit 1
fi
missing=0
for k in $keys; do
  grep -qF "\`$k\`" "$ref" || { echo "FAIL: config key $k is not in docs/reference.md"; missing=1; }
done
for m in $metrics; do
  grep -qF "\`$m\`" "$ref" || { echo "FAIL: metric $m is not in docs/reference.md"; missing=1; }
done
for f in $flags; do
  grep -qF -- "\`$f" "$ref" || { echo "FAIL: flag $f is not in docs/reference.md"; missing=1; }
done
[ "$missing" = 0 ] || exit 1
echo "docs/reference.md lists all $n_keys config keys, $n_metrics metrics and $(echo "$flags" | grep -c .) flags"
