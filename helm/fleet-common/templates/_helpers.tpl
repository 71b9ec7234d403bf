{{/*
Names and labels, as in the `helm create` scaffold: names are cut to 63 characters (the DNS label
limit), selector labels stay minimal, and the image tag defaults to the chart's appVersion.
*/}}

{{/* The chart's name (or nameOverride). */}}
{{- define "fleet-common.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name. If the release name already contains the chart name it is used as
it is, so `helm install inventory helm/inventory` gives "inventory", not "inventory-inventory".
*/}}
{{- define "fleet-common.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<component>": the fullname is cut so the suffix always survives. (list $ "api") */}}
{{- define "fleet-common.componentName" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $base := include "fleet-common.fullname" $root | trunc (int (sub 62 (len $component))) | trimSuffix "-" }}
{{- printf "%s-%s" $base $component }}
{{- end }}

{{/* The service a chart deploys: its console script, queue prefix and database suffix. */}}
{{- define "fleet-common.service" -}}
{{- .Chart.Name }}
{{- end }}

{{- define "fleet-common.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fleet-common.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fleet-common.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fleet-common.labels" -}}
helm.sh/chart: {{ include "fleet-common.chart" . }}
{{ include "fleet-common.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fleet
{{- end }}

{{/* Labels of one component (api, worker, migrate, test, gateway): (list $ "api") */}}
{{- define "fleet-common.componentLabels" -}}
{{- include "fleet-common.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "fleet-common.componentSelectorLabels" -}}
{{- include "fleet-common.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* metadata.name + metadata.labels of a component's object: (list $ "api") */}}
{{- define "fleet-common.componentMetadata" -}}
name: {{ include "fleet-common.componentName" . }}
labels:
  {{- include "fleet-common.componentLabels" . | nindent 2 }}
{{- end }}

{{/* metadata of a chart-wide object (ConfigMap, Secret, ServiceAccount). */}}
{{- define "fleet-common.metadata" -}}
name: {{ include "fleet-common.fullname" . }}
labels:
  {{- include "fleet-common.labels" . | nindent 2 }}
{{- end }}

{{- define "fleet-common.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fleet-common.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference: repository@digest when a digest is given (it pins the exact image, so it wins
over the tag), else repository:tag with the tag defaulting to the chart's appVersion.
*/}}
{{- define "fleet-common.image" -}}
{{- include "fleet-common.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) }}
{{- end }}

{{/* (dict "image" <repository, tag, digest> "default" <tag when none is given>) */}}
{{- define "fleet-common.imageRef" -}}
{{- $image := .image }}
{{- with $image.digest }}
{{- printf "%s@%s" $image.repository . }}
{{- else }}
{{- printf "%s:%s" $image.repository ($image.tag | default .default | toString) }}
{{- end }}
{{- end }}
