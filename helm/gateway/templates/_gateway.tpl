{{- define "gateway.servers" -}}
{{- $root := index . 0 }}
{{- $lines := list }}
{{- range index . 1 }}
{{- $address := tpl . $root }}
{{- if not (regexMatch "^[^\\s;{}#'\"]+$" $address) }}
{{- fail (printf "upstream address %q is not host:port" $address) }}
{{- end }}
{{- $lines = append $lines (printf "server %s;" $address) }}
{{- end }}
{{- join " " $lines }}
{{- end }}

{{- define "gateway.configData" -}}
GATEWAY_LISTEN: {{ .Values.port | quote }}
GATEWAY_RUN_DIR: "/tmp"
GATEWAY_ACCESS_LOG: "/dev/stdout"
GATEWAY_ERROR_LOG: "stderr"
{{- range $name, $value := .Values.config }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- range $service := list "inventory" "shipping" "support" }}
{{ upper $service }}_SERVERS: {{ include "gateway.servers" (list $ (index $.Values.upstreams $service)) | quote }}
{{- end }}
{{- /* Always set, empty included, so the ConfigMap says who is trusted. The image's entrypoint
  checks every entry (values.schema.json only checks their shape) and refuses to start on a
  malformed one. */}}
GATEWAY_TRUSTED_PROXIES: {{ join "," .Values.trustedProxies | quote }}
{{- end }}

{{/* The gateway is the chart's one component: its objects take the plain full name. */}}
{{- define "gateway.metadata" -}}
name: {{ include "fleet-common.fullname" . }}
labels:
  {{- include "fleet-common.componentLabels" (list . "gateway") | nindent 2 }}
{{- end }}
