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
