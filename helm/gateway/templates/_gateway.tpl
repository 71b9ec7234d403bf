{{/*
The "server ...;" lines of one service: (list $ "<service>"). Entries are rendered with `tpl`.
A host name is looked up by the gateway while serving, as its service's only server, so it
cannot share the list (the image refuses that too; failing here says so before the install).
A service in `services` without `upstreams` would stop the gateway's start: say so now.
*/}}
{{- define "gateway.servers" -}}
{{- $root := index . 0 }}
{{- $service := index . 1 }}
{{- if not (hasKey $root.Values.upstreams $service) }}
{{- fail (printf "services lists %s, but upstreams.%s is not set: give its api's host:port (e.g. upstreams.%s: [\"%s-api:8000\"])" $service $service $service $service) }}
{{- end }}
{{- $entries := index $root.Values.upstreams $service }}
{{- $lines := list }}
{{- range $entries }}
{{- $address := tpl . $root }}
{{- if not (regexMatch "^[^\\s;{}#'\"]+$" $address) }}
{{- fail (printf "upstream address %q is not host:port" $address) }}
{{- end }}
{{- $ip := regexMatch "^(([0-9]{1,3}\\.){3}[0-9]{1,3}(:[0-9]+)?|\\[[0-9A-Fa-f:.]+\\](:[0-9]+)?|unix:.+)$" $address }}
{{- if and (not $ip) (gt (len $entries) 1) }}
{{- fail (printf "upstreams.%s: %q is a host name, so it must be the only entry (the gateway looks it up while serving); list IP addresses to have several" $service $address) }}
{{- end }}
{{- $lines = append $lines (printf "server %s;" $address) }}
{{- end }}
{{- join " " $lines }}
{{- end }}

{{/*
The gateway's settings (gateway/entrypoint.sh): GATEWAY_SERVICES lists `services`, and each of
them gets its <SERVICE>_SERVERS; a service not listed is not routed (the gateway answers its
prefix with the 404 problem). The resolver settings appear only when given; the image's
entrypoint otherwise takes the pod's nameserver from /etc/resolv.conf and answers valid for
10 s.
*/}}
{{- define "gateway.configData" -}}
GATEWAY_LISTEN: {{ .Values.port | quote }}
GATEWAY_RUN_DIR: "/tmp"
GATEWAY_ACCESS_LOG: "/dev/stdout"
GATEWAY_ERROR_LOG: "stderr"
{{- range $name, $value := .Values.config }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
GATEWAY_SERVICES: {{ join " " .Values.services | quote }}
{{- range $service := .Values.services }}
{{ upper $service }}_SERVERS: {{ include "gateway.servers" (list $ $service) | quote }}
{{- end }}
{{- /* Always set, empty included, so the ConfigMap says who is trusted. The image's entrypoint
  checks every entry (values.schema.json only checks their shape) and refuses to start on a
  malformed one. */}}
GATEWAY_TRUSTED_PROXIES: {{ join "," .Values.trustedProxies | quote }}
{{- with .Values.resolver.addresses }}
GATEWAY_RESOLVER: {{ join "," . | quote }}
{{- end }}
{{- with .Values.resolver.valid }}
GATEWAY_RESOLVER_VALID: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The gateway is the chart's one component: its objects take the plain full name. */}}
{{- define "gateway.metadata" -}}
name: {{ include "fleet-common.fullname" . }}
labels:
  {{- include "fleet-common.componentLabels" (list . "gateway") | nindent 2 }}
{{- end }}
