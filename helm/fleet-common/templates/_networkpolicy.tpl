{{/*
NetworkPolicies of one service. Together with a namespace-wide default deny (the umbrella chart's
networkPolicy.defaultDeny, or deploy/k8s) they leave only these paths open:
  api      <- the gateway and this release's helm test pod, on the api port; <- Prometheus
  worker   <- Prometheus, on the health/metrics port
  api, worker, migrate (and ops pods) -> DNS, the service's database, the broker
Each policy also stands on its own: it selects its pods for both directions, so the pods are
isolated even where no default deny exists.
*/}}

{{- define "fleet-common.networkPolicy.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* Egress to the database and the broker: to the peers given, or anywhere on their ports. */}}
{{- define "fleet-common.networkPolicy.backendEgress" -}}
{{- $np := .Values.networkPolicy }}
- ports:
    - port: {{ $np.database.port }}
      protocol: TCP
  {{- with $np.database.to }}
  to:
    {{- toYaml . | nindent 4 }}
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
    {{- include "fleet-common.networkPolicy.backendEgress" . | trim | nindent 4 }}
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
    {{- include "fleet-common.networkPolicy.backendEgress" . | trim | nindent 4 }}
---
# The migrate job, and one-off `ops` pods an operator runs with the service's image
# (fleetctl; docs/operations.md): database and broker only.
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
    {{- include "fleet-common.networkPolicy.backendEgress" . | trim | nindent 4 }}
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
