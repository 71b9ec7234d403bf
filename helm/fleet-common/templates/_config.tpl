{{/*
A service's settings (docs/architecture.md) as environment variables: the non-secret ones in a
ConfigMap, the secret ones from a Secret — one the operator made (secrets.existingSecret, or the
default name <fullname>-secrets), or one the chart makes from secrets.values. No secret has a
default value.
*/}}

{{/*
The ConfigMap's data. PORT, HEALTH_PORT and GRACEFUL_TIMEOUT come from the values the probes,
ports and grace period use, so they cannot disagree.
*/}}
{{- define "fleet-common.configData" -}}
{{- $data := dict }}
{{- range $name, $value := .Values.config }}
{{- if hasKey $.Values.secrets.keys $name }}
{{- fail (printf "config.%s is a secret: give it through secrets (existingSecret or values)" $name) }}
{{- end }}
{{- if has $name (list "PORT" "HEALTH_PORT" "GRACEFUL_TIMEOUT") }}
{{- fail (printf "config.%s is set from api.port / worker.port / gracefulTimeoutSeconds" $name) }}
{{- end }}
{{- $_ := set $data $name (toString $value) }}
{{- end }}
{{- $_ := set $data "PORT" (toString .Values.api.port) }}
{{- $_ := set $data "HEALTH_PORT" (toString .Values.worker.port) }}
{{- $_ := set $data "GRACEFUL_TIMEOUT" (toString .Values.gracefulTimeoutSeconds) }}
{{- range $name, $value := $data }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end }}

{{- define "fleet-common.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  {{- include "fleet-common.metadata" . | nindent 2 }}
data:
  {{- include "fleet-common.configData" . | trim | nindent 2 }}
{{- end }}

{{/* The config as an inline env list (the migrate hook runs before the ConfigMap exists). */}}
{{- define "fleet-common.configEnv" -}}
{{- range $name, $value := include "fleet-common.configData" . | fromYaml }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

{{- define "fleet-common.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "fleet-common.componentName" (list . "secrets")) }}
{{- end }}

{{/* "true" when the chart makes the Secret itself (from secrets.values). */}}
{{- define "fleet-common.createSecret" -}}
{{- if and (not .Values.secrets.existingSecret) .Values.secrets.values }}true{{ end }}
{{- end }}

{{- define "fleet-common.secretData" -}}
{{- range $name, $key := .Values.secrets.keys }}
{{- if $key }}
{{ $key }}: {{ required (printf "secrets.values.%s is required when the chart creates the Secret (or set secrets.existingSecret)" $name) (get $.Values.secrets.values $name) | b64enc | quote }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.secrets.values }}
{{- if not (get $.Values.secrets.keys $name) }}
{{- fail (printf "secrets.values.%s has no entry in secrets.keys" $name) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fleet-common.secret" -}}
{{- if include "fleet-common.createSecret" . }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "fleet-common.secretName" . }}
  labels:
    {{- include "fleet-common.labels" . | nindent 4 }}
type: Opaque
data:
  {{- include "fleet-common.secretData" . | trim | nindent 2 }}
{{- end }}
{{- end }}

{{/* env entries for the secret settings: (list $ "<secret name>") */}}
{{- define "fleet-common.secretEnv" -}}
{{- $root := index . 0 }}
{{- $secret := index . 1 }}
{{- range $name, $key := $root.Values.secrets.keys }}
{{- if $key }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll the pods when their configuration changes. */}}
{{- define "fleet-common.checksums" -}}
checksum/config: {{ include "fleet-common.configmap" . | sha256sum }}
{{- if include "fleet-common.createSecret" . }}
checksum/secret: {{ include "fleet-common.secret" . | sha256sum }}
{{- end }}
{{- end }}
