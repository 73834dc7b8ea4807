{{/* Names */}}
{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.fullname" -}}
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

{{- define "gatehouse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: one set per release; the component tells the modes apart. */}}
{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ include "gatehouse.chart" . }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "gatehouse.secretName" -}}
{{- default (include "gatehouse.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{- define "gatehouse.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* True (non-empty) when the store is PostgreSQL: a URL given, or an existing Secret that
     is declared to hold one. */}}
{{- define "gatehouse.sharedStore" -}}
{{- if or .Values.secret.storeUrl (and .Values.secret.existingSecret (eq .Values.mode "edge")) }}true{{ end }}
{{- end }}
{{/* Sidecar mode with an existing Secret: its GATEHOUSE_STORE__URL is used when present. */}}
{{- define "gatehouse.optionalStore" -}}
{{- if and (not (include "gatehouse.sharedStore" .)) .Values.secret.existingSecret }}true{{ end }}
{{- end }}

{{/* Checks that fail the render with a message instead of a broken release. */}}
{{- define "gatehouse.validate" -}}
{{- if not (has .Values.mode (list "edge" "sidecar")) }}
{{- fail (printf "mode must be edge or sidecar, not %q" .Values.mode) }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") (not .Values.sidecar.app.image) }}
{{- fail "sidecar mode renders your app's Deployment: set sidecar.app.image" }}
{{- end }}
{{- $many := or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}
{{- if and (eq .Values.mode "edge") $many (not (include "gatehouse.sharedStore" .)) }}
{{- fail "edge mode with more than one replica needs the shared PostgreSQL store (a SQLite file is per pod): set secret.storeUrl or secret.existingSecret, or replicaCount: 1 with autoscaling.enabled: false" }}
{{- end }}
{{- range $name, $_ := .Values.secret.gatewayKeys }}
{{- if hasPrefix "GATEHOUSE_" $name }}
{{- fail (printf "secret.gatewayKeys: %s starts with GATEHOUSE_, which gatehouse would read as configuration" $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The gatehouse container. In edge mode it listens on every address; in sidecar mode its
     proxy stays on loopback (only the app reaches it, no gateway key needed) and the admin
     port is open for kubelet probes and Prometheus (token required). */}}
{{- define "gatehouse.container" -}}
{{- $edge := eq .Values.mode "edge" -}}
{{- $secret := include "gatehouse.secretName" . -}}
- name: gatehouse
  image: {{ include "gatehouse.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if not $edge }}
  {{- if .Values.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  {{- end }}
  args: [serve, --config, /etc/gatehouse/gateway.yaml]
  ports:
    {{- if $edge }}
    - name: proxy
      containerPort: {{ .Values.ports.proxy }}
    {{- end }}
    - name: gh-admin
      containerPort: {{ .Values.ports.admin }}
  env:
    # This replica's name in a shared store (fleet mode).
    - name: GATEHOUSE_INSTANCE
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: GATEHOUSE_PROXY__LISTEN
      value: {{ printf "%s:%v" (ternary "0.0.0.0" "127.0.0.1" $edge) .Values.ports.proxy | quote }}
    - name: GATEHOUSE_ADMIN__LISTEN
      value: {{ printf "0.0.0.0:%v" .Values.ports.admin | quote }}
    - name: GATEHOUSE_STORE__PATH
      value: /data/gatehouse.db
    {{- if or (include "gatehouse.sharedStore" .) (include "gatehouse.optionalStore" .) }}
    # The shared PostgreSQL event store (fleet mode).
    - name: GATEHOUSE_STORE__URL
      valueFrom:
        secretKeyRef:
          name: {{ $secret }}
          key: GATEHOUSE_STORE__URL
          {{- if include "gatehouse.optionalStore" . }}
          optional: true
          {{- end }}
    {{- end }}
    - name: GATEHOUSE_ADMIN__TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ $secret }}
          key: GATEHOUSE_ADMIN__TOKEN
    - name: OPENROUTER_API_KEY
      valueFrom:
        secretKeyRef:
          name: {{ $secret }}
          key: OPENROUTER_API_KEY
    {{- range $name, $_ := .Values.secret.gatewayKeys }}
    - name: {{ $name }}
      valueFrom:
        secretKeyRef:
          name: {{ $secret }}
          key: {{ $name }}
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $port := ternary "proxy" "gh-admin" $edge }}
  startupProbe:
    httpGet:
      path: /health
      port: {{ $port }}
    periodSeconds: {{ ternary 2 1 $edge }}
    failureThreshold: 30
  livenessProbe:
    httpGet:
      path: /health
      port: {{ $port }}
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  {{- if $edge }}
  readinessProbe:
    httpGet:
      path: {{ .Values.probes.readinessPath }}
      port: proxy
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 3
  {{- end }}
  {{- /* Edge: let endpoints drop the pod before the listener stops. A native sidecar is
         stopped after the app anyway; a plain one keeps serving while the app drains. */}}
  {{- if and (gt (int .Values.preStopSleepSeconds) 0) (or $edge (not .Values.sidecar.native)) }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ .Values.preStopSleepSeconds }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: gatehouse-config
      mountPath: /etc/gatehouse
      readOnly: true
    - name: gatehouse-data
      mountPath: /data
{{- end }}

{{- define "gatehouse.volumes" -}}
- name: gatehouse-config
  configMap:
    name: {{ include "gatehouse.fullname" . }}
- name: gatehouse-data
  emptyDir:
    sizeLimit: {{ .Values.dataSizeLimit }}
{{- end }}
