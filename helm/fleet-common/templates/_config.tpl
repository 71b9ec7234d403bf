{{/*
A service's settings (docs/architecture.md): the non-secret ones in a ConfigMap, the secret ones
from a Secret — one the operator made (secrets.existingSecret, or the default name
<fullname>-secrets), or one the chart makes from secrets.values. No secret has a default value.
The processes read the secret settings from files (<NAME>_FILE) on a read-only volume the Secret
is projected onto, or, with secrets.mountAsFiles=false, from environment variables
(docs/kubernetes.md, "The settings contract").
*/}}

{{/* Settings the chart sets itself, from the values that also decide ports, grace and pooling. */}}
{{- define "fleet-common.derivedConfig" -}}
PORT: {{ .Values.api.port | toString | quote }}
HEALTH_PORT: {{ .Values.worker.port | toString | quote }}
GRACEFUL_TIMEOUT: {{ .Values.gracefulTimeoutSeconds | toString | quote }}
{{- if .Values.pgbouncer.enabled }}
DB_PGBOUNCER: "true"
{{- end }}
{{- end }}

{{/*
The ConfigMap's data. PORT, HEALTH_PORT and GRACEFUL_TIMEOUT come from the values the probes,
ports and grace period use, and DB_PGBOUNCER from pgbouncer.enabled, so they cannot disagree.
*/}}
{{- define "fleet-common.configData" -}}
{{- $data := dict }}
{{- $derived := include "fleet-common.derivedConfig" . | fromYaml }}
{{- range $name, $value := .Values.config }}
{{- if hasKey $.Values.secrets.keys $name }}
{{- fail (printf "config.%s is a secret: give it through secrets (existingSecret or values)" $name) }}
{{- end }}
{{- if has $name (list "PORT" "HEALTH_PORT" "GRACEFUL_TIMEOUT" "DB_PGBOUNCER") }}
{{- fail (printf "config.%s is set from api.port / worker.port / gracefulTimeoutSeconds / pgbouncer.enabled" $name) }}
{{- end }}
{{- $_ := set $data $name (toString $value) }}
{{- end }}
{{- range $name, $value := $derived }}
{{- $_ := set $data $name $value }}
{{- end }}
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

{{/*
Which setting each process reads from which key of the Secret, as YAML: (list $ "api").
Through PgBouncer the api and the worker read DATABASE_URL from pgbouncer.databaseUrlKey (the
same role and database at the PgBouncer Service), and every process that reads it also gets
the direct URL as MIGRATION_DATABASE_URL only if it migrates: the migration lock lives in the
session, which transaction pooling does not keep.
*/}}
{{- define "fleet-common.secretKeys" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $keys := dict }}
{{- range $name, $key := $root.Values.secrets.keys }}
{{- if $key }}
{{- $_ := set $keys $name $key }}
{{- end }}
{{- end }}
{{- if and $root.Values.pgbouncer.enabled (hasKey $keys "DATABASE_URL") }}
{{- if and (eq $component "migrate") (not (hasKey $keys "MIGRATION_DATABASE_URL")) }}
{{- $_ := set $keys "MIGRATION_DATABASE_URL" $keys.DATABASE_URL }}
{{- end }}
{{- $_ := set $keys "DATABASE_URL" $root.Values.pgbouncer.databaseUrlKey }}
{{- end }}
{{- toYaml $keys }}
{{- end }}

{{/*
The URL the api and the worker use through PgBouncer, made from DATABASE_URL when the chart
makes the Secret: the same role, password and database at the PgBouncer Service. The query is
dropped: sslmode and the like concern the server, which PgBouncer reaches (pgbouncer.serverTlsSslMode).
*/}}
{{- define "fleet-common.pgbouncerUrl" -}}
{{- $url := urlParse (required "secrets.values.DATABASE_URL is required with pgbouncer.enabled" (get .Values.secrets.values "DATABASE_URL")) }}
{{- $_ := set $url "host" (printf "%s:%v" (include "fleet-common.componentName" (list . "pgbouncer")) .Values.pgbouncer.port) }}
{{- $_ := set $url "query" "" }}
{{- urlJoin $url }}
{{- end }}

{{- define "fleet-common.secretData" -}}
{{- range $name, $key := .Values.secrets.keys }}
{{- if $key }}
{{ $key }}: {{ required (printf "secrets.values.%s is required when the chart creates the Secret (or set secrets.existingSecret)" $name) (get $.Values.secrets.values $name) | b64enc | quote }}
{{- end }}
{{- end }}
{{- if and .Values.pgbouncer.enabled (.Values.secrets.keys.DATABASE_URL) }}
{{ .Values.pgbouncer.databaseUrlKey }}: {{ include "fleet-common.pgbouncerUrl" . | b64enc | quote }}
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

{{/*
env entries for the secret settings: <NAME>_FILE naming the mounted file, or <NAME> from the
Secret when secrets.mountAsFiles is off. (list $ "<secret name>" "<component>")
*/}}
{{- define "fleet-common.secretEnv" -}}
{{- $root := index . 0 }}
{{- $secret := index . 1 }}
{{- range $name, $key := include "fleet-common.secretKeys" (list $root (index . 2)) | fromYaml }}
{{- if $root.Values.secrets.mountAsFiles }}
- name: {{ $name }}_FILE
  value: {{ printf "%s/%s" $root.Values.secrets.mountPath $name | quote }}
{{- else }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The volume the secret settings are read from: each key the process reads, as a file named
after its setting. 0440 (288): the owner (root) and the pod's fsGroup, which the process runs
in, read it; nobody else. (list $ "<secret name>" "<component>")
*/}}
{{- define "fleet-common.secretVolume" -}}
{{- $root := index . 0 }}
{{- $keys := include "fleet-common.secretKeys" (list $root (index . 2)) | fromYaml }}
{{- if and $root.Values.secrets.mountAsFiles $keys }}
- name: secrets
  projected:
    defaultMode: 288
    sources:
      - secret:
          name: {{ index . 1 }}
          items:
            {{- range $name, $key := $keys }}
            - key: {{ $key }}
              path: {{ $name }}
            {{- end }}
{{- end }}
{{- end }}

{{- define "fleet-common.secretVolumeMount" -}}
{{- if and .Values.secrets.mountAsFiles (include "fleet-common.secretKeys" (list . "api") | fromYaml) }}
- name: secrets
  mountPath: {{ .Values.secrets.mountPath }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod annotations that roll the pods when their configuration changes. */}}
{{- define "fleet-common.checksums" -}}
checksum/config: {{ include "fleet-common.configmap" . | sha256sum }}
{{- if include "fleet-common.createSecret" . }}
checksum/secret: {{ include "fleet-common.secret" . | sha256sum }}
{{- end }}
{{- end }}
