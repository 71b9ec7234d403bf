{{/*
NetworkPolicies of one service. Together with a namespace-wide default deny (the umbrella chart's
networkPolicy.defaultDeny, or deploy/k8s) they leave only these paths open:
  api      <- the gateway and this release's helm test pod, on the api port; <- Prometheus
  worker   <- Prometheus, on the health/metrics port
  api, worker, migrate (and ops pods) -> DNS, the service's database, the broker
  with pgbouncer.enabled: api, worker -> PgBouncer -> the database (migrate and ops pods go
  straight to the database: the migration lock lives in the session)
Each policy also stands on its own: it selects its pods for both directions, so the pods are
isolated even where no default deny exists. The migrate Job's policy is also a hook, created
before the Job (docs/kubernetes.md, "Hooks").
*/}}

{{- define "fleet-common.networkPolicy.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* Egress to the database port, to the peers given or anywhere on that port. */}}
{{- define "fleet-common.networkPolicy.databaseEgress" -}}
{{- $np := .Values.networkPolicy }}
- ports:
    - port: {{ $np.database.port }}
      protocol: TCP
  {{- with $np.database.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
Egress to the database and the broker: to the peers given, or anywhere on their ports. The
api and the worker reach the database through PgBouncer when it is enabled, and then only
PgBouncer's pods: (dict "root" $ "pooled" <bool>)
*/}}
{{- define "fleet-common.networkPolicy.backendEgress" -}}
{{- $root := .root }}
{{- $np := $root.Values.networkPolicy }}
{{- if and .pooled $root.Values.pgbouncer.enabled }}
- ports:
    - port: {{ $root.Values.pgbouncer.port }}
      protocol: TCP
  to:
    - podSelector:
        matchLabels:
          {{- include "fleet-common.componentSelectorLabels" (list $root "pgbouncer") | nindent 10 }}
{{- else }}
{{- include "fleet-common.networkPolicy.databaseEgress" $root }}
{{- end }}
- ports:
    {{- range $np.broker.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with $np.broker.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
The migrate Job's own policy, as a hook created before the Job (the ordinary "<fullname>-migrate"
policy only exists once the release's objects are made, after the pre-install hooks).
*/}}
{{- define "fleet-common.networkPolicy.migrateHook" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  {{- include "fleet-common.componentMetadata" (list . "migrate-hook") | nindent 2 }}
  annotations:
    {{- include "fleet-common.migrate.hookAnnotations" (include "fleet-common.migrate.prerequisiteWeight" .) | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "fleet-common.componentSelectorLabels" (list . "migrate") | nindent 6 }}
  policyTypes: [Ingress, Egress]
  egress:
    {{- include "fleet-common.networkPolicy.dnsEgress" . | nindent 4 }}
    {{- include "fleet-common.networkPolicy.backendEgress" (dict "root" . "pooled" false) | trim | nindent 4 }}
{{- end }}

{{- define "fleet-common.networkPolicy.metricsPeer" -}}
- namespaceSelector:
    matchLabels:
      {{- toYaml .Values.networkPolicy.metrics.namespaceSelector | nindent 6 }}
  podSelector:
    matchLabels:
      {{- toYaml .Values.networkPolicy.metrics.podSelector | nindent 6 }}
{{- end }}

{{- define "fleet-common.networkpolicies" -}}
{{- if .Values.networkPolicy.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  {{- include "fleet-common.componentMetadata" (list . "api") | nindent 2 }}
spec:
  podSelector:
    matchLabels:
      {{- include "fleet-common.componentSelectorLabels" (list . "api") | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              {{- toYaml .Values.networkPolicy.gatewaySelector | nindent 14 }}
        - podSelector:
            matchLabels:
              {{- include "fleet-common.componentSelectorLabels" (list . "test") | nindent 14 }}
      ports:
        - port: http
          protocol: TCP
    - from:
        {{- include "fleet-common.networkPolicy.metricsPeer" . | nindent 8 }}
      ports:
        - port: http
          protocol: TCP
  egress:
    {{- include "fleet-common.networkPolicy.dnsEgress" . | nindent 4 }}
    {{- include "fleet-common.networkPolicy.backendEgress" (dict "root" . "pooled" true) | trim | nindent 4 }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  {{- include "fleet-common.componentMetadata" (list . "worker") | nindent 2 }}
spec:
  podSelector:
    matchLabels:
      {{- include "fleet-common.componentSelectorLabels" (list . "worker") | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        {{- include "fleet-common.networkPolicy.metricsPeer" . | nindent 8 }}
      ports:
        - port: health
          protocol: TCP
  egress:
    {{- include "fleet-common.networkPolicy.dnsEgress" . | nindent 4 }}
    {{- include "fleet-common.networkPolicy.backendEgress" (dict "root" . "pooled" true) | trim | nindent 4 }}
---
# One-off `ops` pods an operator runs with the service's image (fleetctl; docs/operations.md),
# and the migrate Job while the release's objects exist (upgrades): database and broker only.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  {{- include "fleet-common.componentMetadata" (list . "migrate") | nindent 2 }}
spec:
  podSelector:
    matchLabels:
      {{- include "fleet-common.selectorLabels" . | nindent 6 }}
    matchExpressions:
      - key: app.kubernetes.io/component
        operator: In
        values: [migrate, ops]
  policyTypes: [Ingress, Egress]
  egress:
    {{- include "fleet-common.networkPolicy.dnsEgress" . | nindent 4 }}
    {{- include "fleet-common.networkPolicy.backendEgress" (dict "root" . "pooled" false) | trim | nindent 4 }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  {{- include "fleet-common.componentMetadata" (list . "test") | nindent 2 }}
spec:
  podSelector:
    matchLabels:
      {{- include "fleet-common.componentSelectorLabels" (list . "test") | nindent 6 }}
  policyTypes: [Ingress, Egress]
  egress:
    {{- include "fleet-common.networkPolicy.dnsEgress" . | nindent 4 }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "fleet-common.componentSelectorLabels" (list . "api") | nindent 14 }}
      ports:
        - port: http
          protocol: TCP
{{- end }}
{{- end }}
