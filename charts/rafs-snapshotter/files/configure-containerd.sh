#!/bin/sh
# Adds rafs-snapshotter as containerd's proxy snapshotter "nydus" to a
# containerd config file (config version 2: containerd 1.6/1.7; version 3:
# containerd 2.x; k3s/rke2 config.toml.tmpl templates alike), and with
# CRI_SNAPSHOTTER=true makes it the CRI plugin's snapshotter with the
# settings remote snapshotters need. Idempotent: what is already there is
# left as it is; a second run changes nothing. Restarts containerd only when
# RESTART=true and the file changed (or, with RESTART_MARKER, leaves that to
# whoever reads the marker: in the chart, the daemon's container once the
# daemon serves, so that the restarted containerd finds it running).
#
# Environment:
#   CONFIG_FILE      the config file (created when missing)
#   CONFIG_VERSION   2, 3 or auto (the file's "version = N"; 2 without one)
#   NEW_FILE_HEADER  first line of a new file ("" : "version = N")
#   SOCKET           the daemon's gRPC socket (its `address` config key)
#   CRI_SNAPSHOTTER  true: snapshotter = "nydus",
#                    disable_snapshot_annotations = false,
#                    discard_unpacked_layers = false in the CRI section
#   RESTART          true: run RESTART_COMMAND on the host after a change
#   RESTART_COMMAND  e.g. "systemctl restart containerd" (through nsenter
#                    into PID 1's namespaces: the pod needs hostPID)
#   RESTART_MARKER   with RESTART=true: create this file instead of
#                    restarting containerd here
# Exit status: 0 when the file is as wanted (changed or not), 1 on errors.
# Needs only POSIX sh, awk, grep, cmp, cp, mv.
set -eu

CONFIG_FILE=${CONFIG_FILE:?CONFIG_FILE is required}
CONFIG_VERSION=${CONFIG_VERSION:-auto}
NEW_FILE_HEADER=${NEW_FILE_HEADER:-}
SOCKET=${SOCKET:-/run/containerd-nydus/containerd-nydus-grpc.sock}
CRI_SNAPSHOTTER=${CRI_SNAPSHOTTER:-true}
RESTART=${RESTART:-false}
RESTART_COMMAND=${RESTART_COMMAND:-systemctl restart containerd}
RESTART_MARKER=${RESTART_MARKER:-}

log() { echo "configure-containerd: $*" >&2; }

case "$SOCKET" in
  *\"* | *\\*) log "socket path must not contain quotes or backslashes: $SOCKET"; exit 1 ;;
esac

dir=$(dirname "$CONFIG_FILE")
mkdir -p "$dir"
tmp="$CONFIG_FILE.rafs-snapshotter.tmp"
trap 'rm -f "$tmp"' EXIT

if [ -e "$CONFIG_FILE" ]; then
  cp "$CONFIG_FILE" "$tmp"
else
  : >"$tmp"
fi

# The version the file speaks (its top-level "version = N").
file_version=$(awk '
  /^[ \t]*\[/ { exit }   # top-level keys only
  /^[ \t]*version[ \t]*=/ { sub(/^[^=]*=[ \t]*/, ""); sub(/[ \t#].*$/, ""); print; exit }
' "$tmp")
version=$CONFIG_VERSION
if [ "$version" = auto ]; then
  version=${file_version:-2}
fi
case "$version" in
  2 | 3) ;;
  *) log "config version \"$version\" is not 2 or 3 (set containerd.configVersion)"; exit 1 ;;
esac
# A file without a version line is config version 1 to containerd, whose
# plugin tables have other names. One with plugin tables is not edited; one
# without (only top-level keys and comments) gets the version line. A
# template ({{ ... }}) takes its version from what it includes.
if [ -s "$tmp" ] && [ -z "$file_version" ] && ! grep -q '{{' "$tmp"; then
  if grep -Eq '^[[:space:]]*\[+[[:space:]]*plugins' "$tmp"; then
    log "$CONFIG_FILE has plugin tables but no version line: containerd reads it as config" \
      "version 1, which this step does not edit; migrate it (containerd config migrate) or" \
      "add the lines of docs/containerd/config-v2.toml by hand"
    exit 1
  fi
  { printf 'version = %s\n' "$version"; cat "$CONFIG_FILE"; } >"$tmp"
fi

if [ ! -s "$tmp" ]; then
  if [ -n "$NEW_FILE_HEADER" ]; then
    printf '%s\n' "$NEW_FILE_HEADER" >"$tmp"
  else
    printf 'version = %s\n' "$version" >"$tmp"
  fi
fi

# The proxy plugin: appended unless a [proxy_plugins.nydus] table exists.
if grep -Eq "^[[:space:]]*\[[[:space:]]*proxy_plugins[[:space:]]*\.[[:space:]]*(nydus|\"nydus\"|'nydus')[[:space:]]*\]" "$tmp"; then
  log "proxy plugin nydus already configured"
  # Left as it is, but a socket other than the daemon's is worth a word.
  configured=$(awk '
    /^[ \t]*\[/ { in_nydus = ($0 ~ /^[ \t]*\[[ \t]*proxy_plugins[ \t]*\.[ \t]*["\047]?nydus["\047]?[ \t]*\]/) ; next }
    in_nydus && /^[ \t]*address[ \t]*=/ { sub(/^[^=]*=[ \t]*/, ""); gsub(/["\047]/, ""); sub(/[ \t]*(#.*)?$/, ""); print; exit }
  ' "$tmp")
  if [ -n "$configured" ] && [ "$configured" != "$SOCKET" ]; then
    log "WARNING: its address is $configured, but the daemon listens on $SOCKET;" \
      "containerd will not reach it until the two agree"
  fi
else
  {
    printf '\n# Added by rafs-snapshotter: the proxy snapshotter "nydus".\n'
    printf '[proxy_plugins.nydus]\n'
    printf '  type = "snapshot"\n'
    printf '  address = "%s"\n' "$SOCKET"
    if [ "$version" = 3 ]; then
      printf '  [proxy_plugins.nydus.exports]\n'
      printf '    # containerd 2.1+: labels also on transfer-service pulls.\n'
      printf '    enable_remote_snapshot_annotations = "true"\n'
    fi
  } >>"$tmp"
  log "added proxy plugin nydus (address $SOCKET)"
fi

# The CRI settings: set in the CRI table when the file has one, else the
# table is appended with them.
if [ "$CRI_SNAPSHOTTER" = true ]; then
  if [ "$version" = 3 ]; then
    table="plugins.'io.containerd.cri.v1.images'"
    pattern="^[[:space:]]*\\[[[:space:]]*plugins[[:space:]]*\\.[[:space:]]*['\"]io\\.containerd\\.cri\\.v1\\.images['\"][[:space:]]*\\][[:space:]]*(#.*)?$"
  else
    table='plugins."io.containerd.grpc.v1.cri".containerd'
    pattern="^[[:space:]]*\\[[[:space:]]*plugins[[:space:]]*\\.[[:space:]]*['\"]io\\.containerd\\.grpc\\.v1\\.cri['\"][[:space:]]*\\.[[:space:]]*containerd[[:space:]]*\\][[:space:]]*(#.*)?$"
  fi
  if grep -Eq "$pattern" "$tmp"; then
    awk -v pattern="$pattern" '
      function flush() {
        if (!intable) return
        if (!seen["snapshotter"]) print indent "snapshotter = \"nydus\""
        if (!seen["disable_snapshot_annotations"]) print indent "disable_snapshot_annotations = false"
        if (!seen["discard_unpacked_layers"]) print indent "discard_unpacked_layers = false"
        intable = 0
      }
      {
        line = $0
        if (line ~ /^[ \t]*\[/) {
          if (intable) flush()
          if (line ~ pattern) { intable = 1; split("", seen); indent = "  "; print line; next }
          print line; next
        }
        if (intable && line ~ /^[ \t]*(snapshotter|disable_snapshot_annotations|discard_unpacked_layers)[ \t]*=/) {
          key = line; sub(/^[ \t]*/, "", key); sub(/[ \t]*=.*$/, "", key)
          ind = line; sub(/[^ \t].*$/, "", ind); indent = ind
          seen[key] = 1
          if (key == "snapshotter") print ind "snapshotter = \"nydus\""
          else print ind key " = false"
          next
        }
        print line
      }
      END { flush() }
    ' "$tmp" >"$tmp.new"
    mv "$tmp.new" "$tmp"
  else
    {
      printf '\n# Added by rafs-snapshotter: Kubernetes pulls through the snapshotter "nydus"\n'
      printf '# and hands it the layer annotations and the image reference as labels.\n'
      printf '[%s]\n' "$table"
      printf '  snapshotter = "nydus"\n'
      printf '  disable_snapshot_annotations = false\n'
      printf '  discard_unpacked_layers = false\n'
    } >>"$tmp"
  fi
fi

if [ -e "$CONFIG_FILE" ] && cmp -s "$tmp" "$CONFIG_FILE"; then
  log "$CONFIG_FILE unchanged"
  exit 0
fi
if [ -e "$CONFIG_FILE" ] && [ ! -e "$CONFIG_FILE.rafs-snapshotter.orig" ]; then
  cp -p "$CONFIG_FILE" "$CONFIG_FILE.rafs-snapshotter.orig"
fi
mv "$tmp" "$CONFIG_FILE"
log "wrote $CONFIG_FILE (config version $version)"

if [ "$RESTART" = true ] && [ -n "$RESTART_MARKER" ]; then
  mkdir -p "$(dirname "$RESTART_MARKER")"
  : >"$RESTART_MARKER"
  log "containerd is to be restarted once the daemon serves ($RESTART_MARKER)"
elif [ "$RESTART" = true ]; then
  log "restarting containerd on the host: $RESTART_COMMAND"
  nsenter -t 1 -m -u -i -n -p -- /bin/sh -c "$RESTART_COMMAND"
else
  log "containerd reads the change when it next restarts"
fi
