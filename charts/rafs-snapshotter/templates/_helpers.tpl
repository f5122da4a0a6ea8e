{{/* Chart name, or nameOverride. */}}
{{- define "rafs-snapshotter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: fullnameOverride, else release name + chart name (once). */}}
{{- define "rafs-snapshotter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels selecting the pods (never change them on upgrade). */}}
{{- define "rafs-snapshotter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rafs-snapshotter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "rafs-snapshotter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rafs-snapshotter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "rafs-snapshotter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rafs-snapshotter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rafs-snapshotter.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The daemon config as written into the ConfigMap (YAML). */}}
{{- define "rafs-snapshotter.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.registryCredentialsSecret -}}
{{- $_ := set $config.registry "docker_config" "/etc/rafs-snapshotter/docker/config.json" -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Port of config.metrics.address ("host:port"); "" when the endpoint is off. */}}
{{- define "rafs-snapshotter.metricsPort" -}}
{{- $addr := toString .Values.config.metrics.address -}}
{{- if $addr -}}
{{- $port := regexFind "[0-9]+$" $addr -}}
{{- if not $port -}}
{{- fail (printf "config.metrics.address %q has no port" $addr) -}}
{{- end -}}
{{- $port -}}
{{- end -}}
{{- end -}}

{{/*
Directories of the node mounted into the daemon at their own paths: name ->
path. The state root (Bidirectional) is mounted apart.
*/}}
{{- define "rafs-snapshotter.hostDirs" -}}
{{- $dirs := dict -}}
{{- $_ := set $dirs "socket-dir" (dir .Values.config.address) -}}
{{- if .Values.config.containerd_address -}}
{{- $_ := set $dirs "containerd-run" (.Values.config.containerd_address | trimPrefix "unix://" | trimPrefix "unix:" | dir) -}}
{{- end -}}
{{- $_ := set $dirs "containerd-config" (dir .Values.containerd.configFile) -}}
{{- $cache := .Values.config.rafs.cache_dir -}}
{{- if and $cache (not (hasPrefix (printf "%s/" (trimSuffix "/" .Values.config.root)) $cache)) -}}
{{- $_ := set $dirs "cache-dir" $cache -}}
{{- end -}}
{{- toYaml $dirs -}}
{{- end -}}

{{/*
The daemon container's script: with containerd.restart, restart containerd
(once per change of its config, marked by the init step) as soon as the
daemon serves its socket; then run the daemon, with restartInPlace in a loop
that starts it again when it exits.
*/}}
{{- define "rafs-snapshotter.daemonScript" -}}
{{- if and .Values.containerd.configure .Values.containerd.restart }}
# The init step changed containerd's config: restart containerd once the
# daemon serves, so that the restarted containerd finds it running.
marker=/run/rafs-snapshotter/containerd-config-changed
if [ -e "$marker" ]; then
  (
    i=0
    while [ ! -S "$SOCKET" ] && [ "$i" -lt 600 ]; do sleep 1; i=$((i + 1)); done
    echo "restarting containerd on the host: $RESTART_COMMAND" >&2
    nsenter -t 1 -m -u -i -n -p -- /bin/sh -c "$RESTART_COMMAND" && rm -f "$marker"
  ) &
fi
{{- end }}
{{- if .Values.restartInPlace }}
# The daemon is started again in this container when it exits (crash, OOM
# kill), so its container need not be created anew: see restartInPlace in
# values.yaml.
stop=0
trap 'stop=1; kill -TERM "$pid" 2>/dev/null' TERM INT
while :; do
  /usr/local/bin/rafs-snapshotter --config /etc/rafs-snapshotter/config.yaml & pid=$!
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; rc=$?; done
  [ "$stop" = 1 ] && exit 0
  echo "rafs-snapshotter exited ($rc); starting it again in 1 s" >&2
  sleep 1
done
{{- else }}
exec /usr/local/bin/rafs-snapshotter --config /etc/rafs-snapshotter/config.yaml
{{- end }}
{{- end -}}
