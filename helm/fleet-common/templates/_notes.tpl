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

Secret settings ({{ keys .Values.secrets.keys | sortAlpha | join ", " }}) come from Secret "{{ include "fleet-common.secretName" . }}"
{{- if include "fleet-common.createSecret" . }} (created by this chart from secrets.values).
{{- else }}, which must exist before the pods can start:
  kubectl -n {{ .Release.Namespace }} create secret generic {{ include "fleet-common.secretName" . }} \
  {{- range $name, $key := .Values.secrets.keys }}{{ if $key }}
    --from-literal={{ $key }}='...' \
  {{- end }}{{ end }}
    --dry-run=client -o yaml | kubectl apply -f -
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
