{{/* Name of the chart, overridable. */}}
{{- define "portqry-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or fullnameOverride; 63 characters at most (DNS label). */}}
{{- define "portqry-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "portqry-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "portqry-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portqry-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "portqry-exporter.labels" -}}
helm.sh/chart: {{ include "portqry-exporter.chart" . }}
{{ include "portqry-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "portqry-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "portqry-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
TOML rendering of the `config` values.
  tomlKey:   a bare key when it is one ([A-Za-z0-9_-]+), else a quoted key
  tomlValue: string (JSON escapes are TOML basic-string escapes), bool, number, list, map (inline table)
  tomlTable: the scalar, list and map keys of a map, one `key = value` line each, in key order
*/}}
{{- define "portqry-exporter.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "portqry-exporter.tomlValue" -}}
{{- if kindIs "string" . -}}
{{ toJson . }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{ . }}
{{- else if kindIs "slice" . -}}
[{{ range $i, $item := . }}{{ if $i }}, {{ end }}{{ include "portqry-exporter.tomlValue" $item }}{{ end }}]
{{- else if kindIs "map" . -}}
{ {{- range $i, $key := keys . | sortAlpha }}{{ if $i }},{{ end }} {{ include "portqry-exporter.tomlKey" $key }} = {{ include "portqry-exporter.tomlValue" (get $ $key) }}{{ end }} }
{{- else -}}
{{ fail (printf "config: cannot write %v (%s) as TOML" . (kindOf .)) }}
{{- end -}}
{{- end }}

{{- define "portqry-exporter.tomlTable" -}}
{{- range $key, $value := . }}
{{ include "portqry-exporter.tomlKey" $key }} = {{ include "portqry-exporter.tomlValue" $value }}
{{- end }}
{{- end }}

{{/* config.toml: [exporter] with the chart's listen_address first, then every other table of .Values.config. */}}
{{- define "portqry-exporter.configToml" -}}
# Rendered by the portqry-exporter chart from .Values.config.
[exporter]
listen_address = {{ printf "%s:%d" .Values.listenHost (int .Values.containerPort) | toJson }}
{{- include "portqry-exporter.tomlTable" (omit (default (dict) .Values.config.exporter) "listen_address") }}
{{- $tables := omit .Values.config "exporter" }}
{{- if eq .Values.mode "probe" }}
{{- /* the probe Deployment probes what /probe is asked for, nothing on a schedule */}}
{{- $tables = omit $tables "targets" "domains" }}
{{- end }}
{{- range $table, $content := $tables }}
{{- if kindIs "map" $content }}
{{- if $content }}

[{{ include "portqry-exporter.tomlKey" $table }}]
{{- include "portqry-exporter.tomlTable" $content }}
{{- end }}
{{- else if kindIs "slice" $content }}
{{- range $content }}

[[{{ include "portqry-exporter.tomlKey" $table }}]]
{{- include "portqry-exporter.tomlTable" . }}
{{- end }}
{{- else }}
{{- fail (printf "config.%s: expected a table or a list of tables" $table) }}
{{- end }}
{{- end }}
{{ end }}

{{/*
The web config (--web.config.file): the Secret that holds it, or nothing when webConfig is off; its content as
text (a string as given, a map as YAML).
*/}}
{{- define "portqry-exporter.webConfigSecret" -}}
{{- if .Values.webConfig.existingSecret }}
{{- .Values.webConfig.existingSecret }}
{{- else if .Values.webConfig.content }}
{{- printf "%s-web-config" (include "portqry-exporter.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "portqry-exporter.webConfigContent" -}}
{{- if kindIs "string" .Values.webConfig.content }}
{{- .Values.webConfig.content }}
{{- else }}
{{- toYaml .Values.webConfig.content }}
{{- end }}
{{- end }}
