#!/usr/bin/env bash
# docs/reference.md lists every config key, every metric (ctest
# docs_reference), and every flag of `rafs-snapshotter --help`: the keys
# come from `rafs-snapshotter --print-default-config`, the metric names from
# the sources (string
# literals passed to the metrics registry, and the daemon's process gauges
# <prefix>_... of cmd/common/metrics_http.cc). Each must appear in the
# reference as `name`; a config key's row must give its default as the
# default config writes it.
#
# usage: reference_test.sh RAFS_SNAPSHOTTER_BINARY
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
daemon=${1:?usage: reference_test.sh RAFS_SNAPSHOTTER_BINARY}
ref=$top/docs/reference.md

# Config keys as dotted paths (two levels in this format), each with its
# default as the YAML writes it ("key<TAB>value").
defaults=$("$daemon" --print-default-config | awk '
  /^[ \t]*#/ || /^[ \t]*$/ { next }
  /^[a-z_]+:/ {
    k = $1; sub(/:.*/, "", k); top = k
    if ($0 ~ /^[a-z_]+:[ \t]*$/) next
    v = $0; sub(/^[^:]*:[ \t]*/, "", v); print k "\t" v; next
  }
  /^  [a-z_]+:/ { k = $1; sub(/:.*/, "", k); v = $0; sub(/^[^:]*:[ \t]*/, "", v); print top "." k "\t" v }
')
keys=$(cut -f1 <<<"$defaults")
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
while IFS=$'\t' read -r k v; do
  # The row "| `key` | `default` | meaning |".
  row=$(grep -F "| \`$k\` |" "$ref" | head -1 || true)
  if [ -z "$row" ]; then
    echo "FAIL: config key $k is not in docs/reference.md"
    missing=1
    continue
  fi
  documented=$(awk -F' [|] ' '{print $2}' <<<"$row" | sed 's/^`//; s/`$//')
  if [ "$documented" != "$v" ]; then
    echo "FAIL: docs/reference.md gives $k the default $documented; the daemon's is $v"
    missing=1
  fi
done <<<"$defaults"
for m in $metrics; do
  grep -qF "\`$m\`" "$ref" || { echo "FAIL: metric $m is not in docs/reference.md"; missing=1; }
done
for f in $flags; do
  grep -qF -- "\`$f" "$ref" || { echo "FAIL: flag $f is not in docs/reference.md"; missing=1; }
done
[ "$missing" = 0 ] || exit 1
echo "docs/reference.md lists all $n_keys config keys, $n_metrics metrics and $(echo "$flags" | grep -c .) flags"
