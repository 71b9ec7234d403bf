{{/*
What every Fleet pod shares: the locked-down security contexts, the writable /tmp on an otherwise
read-only root filesystem, topology spread, and a graceful stop (preStop + grace period).
*/}}

{{- define "fleet-common.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "fleet-common.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "fleet-common.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "fleet-common.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
Spread a component's pods over zones and nodes: (list $ "api"). The constraints come from
.Values.topologySpread (topologyKey, maxSkew, whenUnsatisfiable, minDomains), each applied to the
component's own pods; a chart without that value spreads as far as the cluster allows
(ScheduleAnyway). DoNotSchedule (values-prod.yaml) leaves a pod Pending rather than pile the
component onto one zone or node, so losing one never takes most of it down.
*/}}
{{- define "fleet-common.topologySpread" -}}
{{- $root := index . 0 }}
{{- $selector := include "fleet-common.componentSelectorLabels" . }}
{{- $constraints := $root.Values.topologySpread | default (list
      (dict "topologyKey" "topology.kubernetes.io/zone" "maxSkew" 1 "whenUnsatisfiable" "ScheduleAnyway")
      (dict "topologyKey" "kubernetes.io/hostname" "maxSkew" 1 "whenUnsatisfiable" "ScheduleAnyway")) }}
{{- range $constraints }}
- maxSkew: {{ .maxSkew }}
  topologyKey: {{ .topologyKey }}
  whenUnsatisfiable: {{ .whenUnsatisfiable }}
  {{- with .minDomains }}
  minDomains: {{ . }}
  {{- end }}
  labelSelector:
    matchLabels:
      {{- $selector | nindent 6 }}
  matchLabelKeys: ["pod-template-hash"]
{{- end }}
{{- end }}

{{/*
Containers an operator adds (initContainers, sidecars), as given; one without a securityContext
gets the locked-down one every Fleet container has. (dict "root" $ "containers" <list>)
*/}}
{{- define "fleet-common.userContainers" -}}
{{- $root := .root }}
{{- $containers := list }}
{{- range .containers }}
{{- $container := deepCopy . }}
{{- if not (hasKey $container "securityContext") }}
{{- $_ := set $container "securityContext" (include "fleet-common.containerSecurityContext" $root | fromYaml) }}
{{- end }}
{{- $containers = append $containers $container }}
{{- end }}
{{- toYaml $containers }}
{{- end }}

{{/*
The grace period covers the preStop pause (endpoints are removed while it runs) plus the time the
process itself takes to finish in-flight work (GRACEFUL_TIMEOUT), plus a margin.
*/}}
{{- define "fleet-common.terminationGracePeriodSeconds" -}}
{{- add .Values.gracefulTimeoutSeconds .Values.preStopSleepSeconds 10 }}
{{- end }}

{{/* preStop pause with the image's own python (the service images have no shell tools). */}}
{{- define "fleet-common.pythonPreStop" -}}
preStop:
  exec:
    command: ["python", "-c", "import time; time.sleep({{ .Values.preStopSleepSeconds }})"]
{{- end }}

{{- define "fleet-common.scheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* startup, liveness and readiness probes on a named port: (dict "port" "http" "live" "/livez" "ready" "/readyz") */}}
{{- define "fleet-common.probes" -}}
startupProbe:
  httpGet:
    path: {{ .live }}
    port: {{ .port }}
  periodSeconds: 2
  timeoutSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: {{ .live }}
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: {{ .ready }}
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}

{{/*
HPA behaviour unless a chart's values give their own: scale up at once (double, or +4 pods, every
15 s), scale down slowly (after 5 minutes of lower load, by at most a quarter a minute).
*/}}
{{- define "fleet-common.defaultBehavior" -}}
scaleUp:
  stabilizationWindowSeconds: 0
  selectPolicy: Max
  policies:
    - type: Percent
      value: 100
      periodSeconds: 15
    - type: Pods
      value: 4
      periodSeconds: 15
scaleDown:
  stabilizationWindowSeconds: 300
  selectPolicy: Min
  policies:
    - type: Percent
      value: 25
      periodSeconds: 60
    - type: Pods
      value: 2
      periodSeconds: 60
{{- end }}

{{/*
An autoscaling/v2 HPA for a component's Deployment: CPU plus the metrics the caller gives.
(dict "root" $ "component" "api" "autoscaling" .Values.api.autoscaling "metrics" "<yaml list>"
      ["name" "<Deployment name, default <fullname>-<component>>"])
*/}}
{{- define "fleet-common.hpa" -}}
{{- $root := .root }}
{{- $name := .name | default (include "fleet-common.componentName" (list $root .component)) }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "fleet-common.componentLabels" (list $root .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ .autoscaling.minReplicas }}
  maxReplicas: {{ .autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .autoscaling.targetCPUUtilizationPercentage }}
    {{- with .metrics }}
    {{- . | nindent 4 }}
    {{- end }}
  behavior:
    {{- if .autoscaling.behavior }}
    {{- toYaml .autoscaling.behavior | nindent 4 }}
    {{- else }}
    {{- include "fleet-common.defaultBehavior" $root | nindent 4 }}
    {{- end }}
{{- end }}

{{/* A PodDisruptionBudget for a component: (dict "root" $ "component" "api" "pdb" .Values.api.podDisruptionBudget ["name" ...]) */}}
{{- define "fleet-common.pdb" -}}
{{- if .pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name | default (include "fleet-common.componentName" (list .root .component)) }}
  labels:
    {{- include "fleet-common.componentLabels" (list .root .component) | nindent 4 }}
spec:
  {{- if hasKey .pdb "minAvailable" }}
  minAvailable: {{ .pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .pdb.maxUnavailable | default 1 }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "fleet-common.componentSelectorLabels" (list .root .component) | nindent 6 }}
{{- end }}
{{- end }}

{{- define "fleet-common.serviceaccount" -}}
{{- if .Values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "fleet-common.serviceAccountName" . }}
  labels:
    {{- include "fleet-common.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end }}
