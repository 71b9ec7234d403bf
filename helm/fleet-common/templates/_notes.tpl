{{- define "fleet-common.notes" -}}
{{- $api := include "fleet-common.componentName" (list . "api") -}}
{{- $worker := include "fleet-common.componentName" (list . "worker") -}}
Fleet {{ include "fleet-common.service" . }} {{ .Chart.AppVersion }} — release {{ .Release.Name }} in namespace {{ .Release.Namespace }}.

Image:     {{ include "fleet-common.image" . }}
api:       Deployment/{{ $api }}, Service {{ $api }}:{{ .Values.api.port }} (reached through the gateway only)
worker:    Deployment/{{ $worker }} (probes and metrics on :{{ .Values.worker.port }})
{{- if .Values.migrations.enabled }}
migrate:   ran as the pre-install/pre-upgrade hook Job {{ include "fleet-common.componentName" (list . "migrate") }}
{{- end }}

{{- $keys := dict }}
{{- range $component := list "api" "migrate" }}
{{- range $name, $key := include "fleet-common.secretKeys" (list $ $component) | fromYaml }}
{{- $_ := set $keys $key $name }}
{{- end }}
{{- end }}

Secret settings ({{ keys .Values.secrets.keys | sortAlpha | join ", " }}) come from Secret "{{ include "fleet-common.secretName" . }}"
{{- if .Values.secrets.mountAsFiles }}, mounted read-only as files under {{ .Values.secrets.mountPath }}{{ end }}
{{- if include "fleet-common.createSecret" . }} (created by this chart from secrets.values).
{{- else }}, which must exist before the pods can start:
  kubectl -n {{ .Release.Namespace }} create secret generic {{ include "fleet-common.secretName" . }} \
  {{- range $key := keys $keys | sortAlpha }}
    --from-literal={{ $key }}='...' \
  {{- end }}
    --dry-run=client -o yaml | kubectl apply -f -
{{- end }}
{{- if .Values.pgbouncer.enabled }}
PgBouncer: Deployment/{{ include "fleet-common.componentName" (list . "pgbouncer") }}, Service {{ include "fleet-common.componentName" (list . "pgbouncer") }}:{{ .Values.pgbouncer.port }}; the api and the worker
  connect to it ({{ .Values.pgbouncer.databaseUrlKey }}), migrations straight to PostgreSQL (DATABASE_URL).
{{- if not (include "fleet-common.createSecret" .) }}
  {{ .Values.pgbouncer.databaseUrlKey }} is DATABASE_URL with the host and port replaced by {{ include "fleet-common.componentName" (list . "pgbouncer") }}:{{ .Values.pgbouncer.port }}.
{{- end }}
{{- end }}

Watch the rollout and the autoscalers:
  kubectl -n {{ .Release.Namespace }} rollout status deployment/{{ $api }}
  kubectl -n {{ .Release.Namespace }} rollout status deployment/{{ $worker }}
  kubectl -n {{ .Release.Namespace }} get hpa -l app.kubernetes.io/instance={{ .Release.Name }} -w
Check it:
  helm test {{ .Release.Name }} -n {{ .Release.Namespace }}
Parked (dead-lettered) messages:
  kubectl -n {{ .Release.Namespace }} exec deploy/{{ $worker }} -- fleetctl dlq list --service {{ include "fleet-common.service" . }}
{{- end }}
