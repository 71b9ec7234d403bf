{{/*
An optional PgBouncer in front of the service's database (pgbouncer.enabled), in transaction
pooling: the api and worker processes keep their pools (client connections, cheap) and
PgBouncer holds at most (defaultPoolSize + reservePoolSize) server connections per replica,
whatever the autoscalers do. The migrate Job and ops pods still connect straight to PostgreSQL.
docs/kubernetes.md, "PgBouncer".

PgBouncer's address of the database and its credentials come from the service's own Secret
(DATABASE_URL): an init container with the service's image (it has Python) writes the
[databases] entry and the auth file from it into a memory-backed emptyDir that pgbouncer.ini
(this chart's ConfigMap) includes, so no credential is in the chart or its values.
*/}}

{{- define "fleet-common.pgbouncer.runDir" -}}/var/run/pgbouncer{{- end }}
{{- define "fleet-common.pgbouncer.configDir" -}}/etc/pgbouncer{{- end }}

{{- define "fleet-common.pgbouncer.ini" -}}
{{- $pb := .Values.pgbouncer }}
{{- $run := include "fleet-common.pgbouncer.runDir" . }}
[pgbouncer]
listen_addr = 0.0.0.0
listen_port = {{ $pb.port }}
; no Unix socket: nothing in the pod connects locally, and the root filesystem is read-only
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {{ $run }}/userlist.txt
pool_mode = {{ $pb.poolMode }}
default_pool_size = {{ $pb.defaultPoolSize }}
reserve_pool_size = {{ $pb.reservePoolSize }}
reserve_pool_timeout = 3
; the hard cap of server connections per replica, what the connection budget counts
max_db_connections = {{ add $pb.defaultPoolSize $pb.reservePoolSize }}
max_client_conn = {{ $pb.maxClientConn }}
max_prepared_statements = {{ $pb.maxPreparedStatements }}
server_tls_sslmode = {{ $pb.serverTlsSslMode }}
{{- with $pb.ignoreStartupParameters }}
ignore_startup_parameters = {{ join "," . }}
{{- end }}
server_idle_timeout = 300
log_connections = 0
log_disconnections = 0
%include {{ $run }}/databases.ini
{{- end }}

{{/* Reads the service's DATABASE_URL file, writes the [databases] entry and the auth file. */}}
{{- define "fleet-common.pgbouncer.render" -}}
import os
import pathlib
import sys
from urllib.parse import unquote, urlsplit

url = urlsplit(pathlib.Path(os.environ["DATABASE_URL_FILE"]).read_text().strip())
if url.scheme not in ("postgresql", "postgresql+psycopg", "postgres") or not url.hostname:
    sys.exit("pgbouncer: DATABASE_URL is not a postgresql:// URL with a host")
user, password = unquote(url.username or ""), unquote(url.password or "")
database = unquote(url.path.lstrip("/"))
if not (user and password and database):
    sys.exit("pgbouncer: DATABASE_URL needs a user, a password and a database")


def quoted(value):
    return '"' + value.replace('"', '""') + '"'


run = pathlib.Path(os.environ["PGBOUNCER_RUN_DIR"])
host = url.hostname
(run / "databases.ini").write_text(
    f"[databases]\n{database} = host={host} port={url.port or 5432} dbname={database}\n")
userlist = run / "userlist.txt"
userlist.write_text(f"{quoted(user)} {quoted(password)}\n")
userlist.chmod(0o440)
print(f"pgbouncer: {database} at {host}:{url.port or 5432} for {user}")
{{- end }}

{{- define "fleet-common.pgbouncer.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  {{- include "fleet-common.componentMetadata" (list . "pgbouncer") | nindent 2 }}
data:
  pgbouncer.ini: |
    {{- include "fleet-common.pgbouncer.ini" . | trim | nindent 4 }}
  render.py: |
    {{- include "fleet-common.pgbouncer.render" . | trim | nindent 4 }}
{{- end }}

{{- define "fleet-common.pgbouncer.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.pgbouncer.securityContext.runAsUser }}
runAsGroup: {{ .Values.pgbouncer.securityContext.runAsGroup }}
fsGroup: {{ .Values.pgbouncer.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "fleet-common.pgbouncer.deployment" -}}
{{- $pb := .Values.pgbouncer }}
{{- $run := include "fleet-common.pgbouncer.runDir" . }}
{{- $config := include "fleet-common.pgbouncer.configDir" . }}
{{- $secrets := .Values.secrets.mountPath }}
apiVersion: apps/v1
kind: Deployment
metadata:
  {{- include "fleet-common.componentMetadata" (list . "pgbouncer") | nindent 2 }}
spec:
  replicas: {{ $pb.replicaCount }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "fleet-common.componentSelectorLabels" (list . "pgbouncer") | nindent 6 }}
  template:
    metadata:
      annotations:
        checksum/config: {{ include "fleet-common.pgbouncer.configmap" . | sha256sum }}
        {{- if include "fleet-common.createSecret" . }}
        checksum/secret: {{ include "fleet-common.secret" . | sha256sum }}
        {{- end }}
      labels:
        {{- include "fleet-common.componentLabels" (list . "pgbouncer") | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "fleet-common.serviceAccountName" . }}
      automountServiceAccountToken: false
      securityContext:
        {{- include "fleet-common.pgbouncer.podSecurityContext" . | nindent 8 }}
      # Bounds PgBouncer's shutdown on SIGTERM, which waits for its clients' transactions.
      terminationGracePeriodSeconds: {{ include "fleet-common.terminationGracePeriodSeconds" . }}
      topologySpreadConstraints:
        {{- include "fleet-common.topologySpread" (list . "pgbouncer") | trim | nindent 8 }}
      {{- with include "fleet-common.scheduling" . | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      initContainers:
        - name: config
          image: {{ include "fleet-common.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          command: ["python", "{{ $config }}/render.py"]
          env:
            - name: DATABASE_URL_FILE
              value: {{ printf "%s/DATABASE_URL" $secrets | quote }}
            - name: PGBOUNCER_RUN_DIR
              value: {{ $run | quote }}
          resources:
            {{- toYaml $pb.initResources | nindent 12 }}
          securityContext:
            {{- include "fleet-common.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: {{ $config }}
              readOnly: true
            - name: run
              mountPath: {{ $run }}
            - name: secrets
              mountPath: {{ $secrets }}
              readOnly: true
      containers:
        - name: pgbouncer
          image: {{ include "fleet-common.imageRef" (dict "image" $pb.image "default" "") | quote }}
          imagePullPolicy: {{ $pb.image.pullPolicy }}
          command: ["pgbouncer", "{{ $config }}/pgbouncer.ini"]
          ports:
            - name: pgbouncer
              containerPort: {{ $pb.port }}
              protocol: TCP
          startupProbe:
            tcpSocket:
              port: pgbouncer
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            tcpSocket:
              port: pgbouncer
            periodSeconds: 10
            timeoutSeconds: 3
          readinessProbe:
            tcpSocket:
              port: pgbouncer
            periodSeconds: 5
            timeoutSeconds: 3
          lifecycle:
            # Leave the Service's endpoints before the shutdown starts.
            preStop:
              exec:
                command: ["sleep", "{{ .Values.preStopSleepSeconds }}"]
          resources:
            {{- toYaml $pb.resources | nindent 12 }}
          securityContext:
            {{- include "fleet-common.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: {{ $config }}
              readOnly: true
            - name: run
              mountPath: {{ $run }}
              readOnly: true
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: config
          configMap:
            name: {{ include "fleet-common.componentName" (list . "pgbouncer") }}
            defaultMode: 292
        # The auth file holds the database password: memory only, never on the node's disk.
        - name: run
          emptyDir:
            medium: Memory
            sizeLimit: 1Mi
        - name: secrets
          projected:
            defaultMode: 288
            sources:
              - secret:
                  name: {{ include "fleet-common.secretName" . }}
                  items:
                    - key: {{ required "pgbouncer.enabled needs secrets.keys.DATABASE_URL" .Values.secrets.keys.DATABASE_URL }}
                      path: DATABASE_URL
        {{- include "fleet-common.tmpVolume" . | nindent 8 }}
{{- end }}

{{- define "fleet-common.pgbouncer.service" -}}
apiVersion: v1
kind: Service
metadata:
  {{- include "fleet-common.componentMetadata" (list . "pgbouncer") | nindent 2 }}
spec:
  type: ClusterIP
  selector:
    {{- include "fleet-common.componentSelectorLabels" (list . "pgbouncer") | nindent 4 }}
  ports:
    - name: pgbouncer
      port: {{ .Values.pgbouncer.port }}
      targetPort: pgbouncer
      protocol: TCP
{{- end }}

{{/* PgBouncer <- this release's api and worker; PgBouncer -> DNS and the database. */}}
{{- define "fleet-common.pgbouncer.networkpolicy" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  {{- include "fleet-common.componentMetadata" (list . "pgbouncer") | nindent 2 }}
spec:
  podSelector:
    matchLabels:
      {{- include "fleet-common.componentSelectorLabels" (list . "pgbouncer") | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              {{- include "fleet-common.selectorLabels" . | nindent 14 }}
            matchExpressions:
              - key: app.kubernetes.io/component
                operator: In
                values: [api, worker]
      ports:
        - port: pgbouncer
          protocol: TCP
  egress:
    {{- include "fleet-common.networkPolicy.dnsEgress" . | nindent 4 }}
    {{- include "fleet-common.networkPolicy.databaseEgress" . | trim | nindent 4 }}
{{- end }}

{{- define "fleet-common.pgbouncer" -}}
{{- if .Values.pgbouncer.enabled }}
{{- include "fleet-common.pgbouncer.configmap" . }}
---
{{ include "fleet-common.pgbouncer.deployment" . }}
---
{{ include "fleet-common.pgbouncer.service" . }}
{{- if .Values.networkPolicy.enabled }}
---
{{ include "fleet-common.pgbouncer.networkpolicy" . }}
{{- end }}
{{- with include "fleet-common.pdb" (dict "root" . "component" "pgbouncer" "pdb" .Values.pgbouncer.podDisruptionBudget) | trim }}
---
{{ . }}
{{- end }}
{{- end }}
{{- end }}
