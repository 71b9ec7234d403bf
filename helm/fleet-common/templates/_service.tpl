{{/*
The objects of one Fleet service (api + worker + migrate job), included one per file by each
service chart (helm/inventory/templates/*.yaml). The same image runs every process:
`<service> api` on api.port, `<service> worker` with its probes on worker.port, `<service> migrate`.
*/}}

{{/*
Where a service process reads its settings: the ConfigMap (or, in the migrate hook, which runs
before the ConfigMap exists, the same data inline), the secret settings (files or variables),
then the operator's extraEnvFrom and extraEnv, which come last so they can override.
(dict "root" $ "component" "api" "secret" "<Secret name>" "inline" <bool>)
*/}}
{{- define "fleet-common.processEnv" -}}
{{- $root := .root }}
{{- if or (not .inline) $root.Values.extraEnvFrom }}
envFrom:
  {{- if not .inline }}
  - configMapRef:
      name: {{ include "fleet-common.fullname" $root }}
  {{- end }}
  {{- with $root.Values.extraEnvFrom }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
env:
  {{- if .inline }}
  {{- include "fleet-common.configEnv" $root | trim | nindent 2 }}
  {{- end }}
  {{- include "fleet-common.secretEnv" (list $root .secret .component) | trim | nindent 2 }}
  {{- with $root.Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* The mounts of a service process: /tmp, the secret settings, the operator's extraVolumeMounts. */}}
{{- define "fleet-common.processVolumeMounts" -}}
{{- include "fleet-common.tmpVolumeMount" . }}
{{- with include "fleet-common.secretVolumeMount" . | trim }}
{{ . }}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The volumes of a service pod: (list $ "<Secret name>" "<component>") */}}
{{- define "fleet-common.processVolumes" -}}
{{- $root := index . 0 }}
{{- include "fleet-common.tmpVolume" $root }}
{{- with include "fleet-common.secretVolume" . | trim }}
{{ . }}
{{- end }}
{{- with $root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The operator's init containers, before any service container starts: (dict "root" $) */}}
{{- define "fleet-common.initContainers" -}}
{{- with .root.Values.initContainers }}
initContainers:
  {{- include "fleet-common.userContainers" (dict "root" $.root "containers" .) | nindent 2 }}
{{- end }}
{{- end }}

{{/* The pod of a long-running process: (dict "root" $ "component" "api" "port" "http") */}}
{{- define "fleet-common.processPod" -}}
{{- $root := .root }}
{{- $values := index $root.Values .component }}
{{- $secret := include "fleet-common.secretName" $root }}
metadata:
  annotations:
    {{- include "fleet-common.checksums" $root | trim | nindent 4 }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "fleet-common.componentLabels" (list $root .component) | nindent 4 }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "fleet-common.serviceAccountName" $root }}
  automountServiceAccountToken: false
  securityContext:
    {{- include "fleet-common.podSecurityContext" $root | nindent 4 }}
  terminationGracePeriodSeconds: {{ include "fleet-common.terminationGracePeriodSeconds" $root }}
  topologySpreadConstraints:
    {{- include "fleet-common.topologySpread" (list $root .component) | trim | nindent 4 }}
  {{- with include "fleet-common.scheduling" $root | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- with include "fleet-common.initContainers" (dict "root" $root) | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "fleet-common.image" $root | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: [{{ .component | quote }}]
      ports:
        - name: {{ .port }}
          containerPort: {{ $values.port }}
          protocol: TCP
      {{- include "fleet-common.processEnv" (dict "root" $root "component" .component "secret" $secret "inline" false) | trim | nindent 6 }}
      {{- include "fleet-common.probes" (dict "port" .port "live" "/livez" "ready" "/readyz") | nindent 6 }}
      lifecycle:
        {{- include "fleet-common.pythonPreStop" $root | nindent 8 }}
      resources:
        {{- toYaml $values.resources | nindent 8 }}
      securityContext:
        {{- include "fleet-common.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        {{- include "fleet-common.processVolumeMounts" $root | nindent 8 }}
    {{- with $root.Values.sidecars }}
    {{- include "fleet-common.userContainers" (dict "root" $root "containers" .) | nindent 4 }}
    {{- end }}
  volumes:
    {{- include "fleet-common.processVolumes" (list $root $secret .component) | nindent 4 }}
{{- end }}

{{/* A long-running process's Deployment: (dict "root" $ "component" "api" "port" "http") */}}
{{- define "fleet-common.processDeployment" -}}
{{- $values := index .root.Values .component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  {{- include "fleet-common.componentMetadata" (list .root .component) | nindent 2 }}
spec:
  {{- if not $values.autoscaling.enabled }}
  replicas: {{ $values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "fleet-common.componentSelectorLabels" (list .root .component) | nindent 6 }}
  template:
    {{- include "fleet-common.processPod" . | trim | nindent 4 }}
{{- end }}

{{- define "fleet-common.api.deployment" -}}
{{- include "fleet-common.processDeployment" (dict "root" . "component" "api" "port" "http") }}
{{- end }}

{{- define "fleet-common.worker.deployment" -}}
{{- include "fleet-common.processDeployment" (dict "root" . "component" "worker" "port" "health") }}
{{- end }}

{{- define "fleet-common.api.service" -}}
apiVersion: v1
kind: Service
metadata:
  {{- include "fleet-common.componentMetadata" (list . "api") | nindent 2 }}
spec:
  type: ClusterIP
  selector:
    {{- include "fleet-common.componentSelectorLabels" (list . "api") | nindent 4 }}
  ports:
    - name: http
      port: {{ .Values.api.port }}
      targetPort: http
      protocol: TCP
{{- end }}

{{/* The workers serve nothing but probes and metrics: a headless Service for the ServiceMonitor. */}}
{{- define "fleet-common.worker.service" -}}
{{- if .Values.metrics.serviceMonitor.enabled }}
apiVersion: v1
kind: Service
metadata:
  {{- include "fleet-common.componentMetadata" (list . "worker") | nindent 2 }}
spec:
  clusterIP: None
  selector:
    {{- include "fleet-common.componentSelectorLabels" (list . "worker") | nindent 4 }}
  ports:
    - name: health
      port: {{ .Values.worker.port }}
      targetPort: health
      protocol: TCP
{{- end }}
{{- end }}

{{/*
api: CPU plus requests per second per pod — a Pods metric that prometheus-adapter derives from
prometheus-flask-exporter's flask_http_request_total (deploy/k8s/base/monitoring/).
*/}}
{{- define "fleet-common.api.hpa" -}}
{{- if .Values.api.autoscaling.enabled }}
{{- $metrics := printf `- type: Pods
  pods:
    metric:
      name: flask_http_request_per_second
    target:
      type: AverageValue
      averageValue: %s` (.Values.api.autoscaling.requestsPerSecondPerPod | toString | quote) }}
{{- include "fleet-common.hpa" (dict "root" . "component" "api" "autoscaling" .Values.api.autoscaling "metrics" $metrics) }}
{{- end }}
{{- end }}

{{/*
worker: CPU plus ready messages per pod of the service's queue — an External metric from the
fleet_queue_messages_ready gauge every worker exposes, divided by the number of workers.
*/}}
{{- define "fleet-common.worker.queue" -}}
{{- .Values.worker.autoscaling.queue | default (printf "%s.events" (include "fleet-common.service" .)) }}
{{- end }}

{{- define "fleet-common.worker.hpa" -}}
{{- if .Values.worker.autoscaling.enabled }}
{{- $metrics := printf `- type: External
  external:
    metric:
      name: fleet_queue_messages_ready
      selector:
        matchLabels:
          queue: %s
    target:
      type: AverageValue
      averageValue: %s` (include "fleet-common.worker.queue" . | quote) (.Values.worker.autoscaling.readyMessagesPerPod | toString | quote) }}
{{- include "fleet-common.hpa" (dict "root" . "component" "worker" "autoscaling" .Values.worker.autoscaling "metrics" $metrics) }}
{{- end }}
{{- end }}

{{- define "fleet-common.api.pdb" -}}
{{- include "fleet-common.pdb" (dict "root" . "component" "api" "pdb" .Values.api.podDisruptionBudget) }}
{{- end }}

{{/*
A worker's budget too: a node drain then takes the workers one at a time, so the queue keeps
being consumed and an event handler is never cut off in every replica at once.
*/}}
{{- define "fleet-common.worker.pdb" -}}
{{- include "fleet-common.pdb" (dict "root" . "component" "worker" "pdb" .Values.worker.podDisruptionBudget) }}
{{- end }}

{{/*
Migrations run as a pre-install/pre-upgrade hook Job, before any pod of the new version starts.
Hooks run before the release's ordinary objects exist (on a first install none of them does), so
everything the Job needs is a hook too, with a lower weight: its ServiceAccount, a copy of the
Secret when the chart makes it, and its NetworkPolicy (under a namespace default deny the Job
could otherwise reach neither DNS nor its database). Its config is inline. Helm creates hooks in
weight order and waits for the Job; the hook objects are deleted once every hook has succeeded
(a failed run keeps them, with the Job's pod and logs, until the next attempt).
docs/kubernetes.md, "Hooks".
*/}}
{{- define "fleet-common.migrate.hookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ . | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/* The weight of what the Job needs, and the Job's: everything it needs exists first. */}}
{{- define "fleet-common.migrate.prerequisiteWeight" -}}-10{{- end }}
{{- define "fleet-common.migrate.jobWeight" -}}0{{- end }}

{{- define "fleet-common.migrate.secretName" -}}
{{- if include "fleet-common.createSecret" . }}
{{- include "fleet-common.componentName" (list . "migrate") }}
{{- else }}
{{- include "fleet-common.secretName" . }}
{{- end }}
{{- end }}

{{- define "fleet-common.migrate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- include "fleet-common.componentName" (list . "migrate") }}
{{- else }}
{{- include "fleet-common.serviceAccountName" . }}
{{- end }}
{{- end }}

{{- define "fleet-common.migrate.job" -}}
{{- if .Values.migrations.enabled }}
{{- $weight := include "fleet-common.migrate.prerequisiteWeight" . }}
{{- $secret := include "fleet-common.migrate.secretName" . }}
{{- if .Values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  {{- include "fleet-common.componentMetadata" (list . "migrate") | nindent 2 }}
  annotations:
    {{- include "fleet-common.migrate.hookAnnotations" $weight | nindent 4 }}
    {{- with .Values.serviceAccount.annotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
automountServiceAccountToken: false
---
{{- end }}
{{- if include "fleet-common.createSecret" . }}
apiVersion: v1
kind: Secret
metadata:
  {{- include "fleet-common.componentMetadata" (list . "migrate") | nindent 2 }}
  annotations:
    {{- include "fleet-common.migrate.hookAnnotations" $weight | nindent 4 }}
type: Opaque
data:
  {{- include "fleet-common.secretData" . | trim | nindent 2 }}
---
{{- end }}
{{- if .Values.networkPolicy.enabled }}
{{ include "fleet-common.networkPolicy.migrateHook" . }}
---
{{- end }}
apiVersion: batch/v1
kind: Job
metadata:
  {{- include "fleet-common.componentMetadata" (list . "migrate") | nindent 2 }}
  annotations:
    {{- include "fleet-common.migrate.hookAnnotations" (include "fleet-common.migrate.jobWeight" .) | nindent 4 }}
spec:
  backoffLimit: {{ .Values.migrations.backoffLimit }}
  activeDeadlineSeconds: {{ .Values.migrations.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "fleet-common.componentLabels" (list . "migrate") | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "fleet-common.migrate.serviceAccountName" . }}
      automountServiceAccountToken: false
      securityContext:
        {{- include "fleet-common.podSecurityContext" . | nindent 8 }}
      {{- with include "fleet-common.scheduling" . | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      {{- with include "fleet-common.initContainers" (dict "root" .) | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      containers:
        - name: migrate
          image: {{ include "fleet-common.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          args: ["migrate"]
          {{- include "fleet-common.processEnv" (dict "root" . "component" "migrate" "secret" $secret "inline" true) | trim | nindent 10 }}
          resources:
            {{- toYaml .Values.migrations.resources | nindent 12 }}
          securityContext:
            {{- include "fleet-common.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "fleet-common.processVolumeMounts" . | nindent 12 }}
      volumes:
        {{- include "fleet-common.processVolumes" (list . $secret "migrate") | nindent 8 }}
{{- end }}
{{- end }}

{{/* `helm test`: the api answers /readyz through its Service (so its database is reachable). */}}
{{- define "fleet-common.test" -}}
apiVersion: v1
kind: Pod
metadata:
  {{- include "fleet-common.componentMetadata" (list . "test") | nindent 2 }}
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext:
    {{- include "fleet-common.podSecurityContext" . | nindent 4 }}
  {{- with include "fleet-common.scheduling" . | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  containers:
    - name: test
      image: {{ include "fleet-common.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command:
        - python
        - -c
        - |
          import urllib.request
          url = "http://{{ include "fleet-common.componentName" (list . "api") }}:{{ .Values.api.port }}/readyz"
          with urllib.request.urlopen(url, timeout=10) as response:
              print(url, response.status, response.read().decode())
      resources:
        {{- toYaml .Values.tests.resources | nindent 8 }}
      securityContext:
        {{- include "fleet-common.containerSecurityContext" . | nindent 8 }}
      volumeMounts:
        {{- include "fleet-common.tmpVolumeMount" . | nindent 8 }}
  volumes:
    {{- include "fleet-common.tmpVolume" . | nindent 4 }}
{{- end }}

{{- define "fleet-common.servicemonitor" -}}
{{- if .Values.metrics.serviceMonitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "fleet-common.fullname" . }}
  labels:
    {{- include "fleet-common.labels" . | nindent 4 }}
    {{- with .Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "fleet-common.selectorLabels" . | nindent 6 }}
  endpoints:
    {{- range list "http" "health" }}
    - port: {{ . }}
      path: /metrics
      interval: {{ $.Values.metrics.serviceMonitor.interval }}
      scrapeTimeout: {{ $.Values.metrics.serviceMonitor.scrapeTimeout }}
    {{- end }}
{{- end }}
{{- end }}
