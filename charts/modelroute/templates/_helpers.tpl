{{/*
Names, labels and the values several templates share. Every object name derives from
"modelroute.fullname"; the operator is told the same names in its arguments, so the two
can never disagree.
*/}}

{{- define "modelroute.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name, truncated so that "<fullname>-operator" and "<fullname>-webhook" stay within
the 63 characters of a DNS label (Service names become host names).
*/}}
{{- define "modelroute.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelroute.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelroute.labels" -}}
helm.sh/chart: {{ include "modelroute.chart" . }}
{{ include "modelroute.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelroute
{{- end }}

{{/* Selects the operator pods. Immutable in a Deployment: never add to it. */}}
{{- define "modelroute.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelroute.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Object names (docs/install.md lists them). */}}
{{- define "modelroute.operatorName" -}}{{ include "modelroute.fullname" . }}-operator{{- end }}
{{- define "modelroute.webhookName" -}}{{ include "modelroute.fullname" . }}-webhook{{- end }}
{{- define "modelroute.injectName" -}}{{ include "modelroute.fullname" . }}-inject{{- end }}
{{- define "modelroute.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- required "tls.existingSecret is required with tls.mode=existingSecret" .Values.tls.existingSecret }}
{{- else }}
{{- include "modelroute.fullname" . }}-tls
{{- end }}
{{- end }}

{{/* The names the serving certificate must carry: both Services, short and long form. */}}
{{- define "modelroute.tlsDnsNames" -}}
{{- $ns := .Release.Namespace }}
{{- $operator := include "modelroute.operatorName" . }}
{{- $webhook := include "modelroute.webhookName" . }}
{{- list
    (printf "%s.%s.svc" $operator $ns)
    (printf "%s.%s.svc.cluster.local" $operator $ns)
    (printf "%s.%s.svc" $webhook $ns)
    (printf "%s.%s.svc.cluster.local" $webhook $ns)
  | toJson }}
{{- end }}

{{/* The gRPC address sidecars dial: the leader-only Service. */}}
{{- define "modelroute.operatorAddress" -}}
{{- printf "https://%s.%s.svc:%d" (include "modelroute.operatorName" .) .Release.Namespace (int .Values.operator.ports.grpc) }}
{{- end }}

{{- define "modelroute.operatorImage" -}}
{{- $image := .Values.images.operator }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}

{{- define "modelroute.sidecarImage" -}}
{{- $image := .Values.images.sidecar }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}

{{/* OTEL_* for the operator and the sidecars; empty list when otel is off. */}}
{{- define "modelroute.otelEnv" -}}
{{- if .Values.otel.endpoint }}
{{- $env := list
    (dict "name" "OTEL_EXPORTER_OTLP_ENDPOINT" "value" .Values.otel.endpoint)
    (dict "name" "OTEL_EXPORTER_OTLP_PROTOCOL" "value" .Values.otel.protocol) }}
{{- with .Values.otel.sampler }}
{{- $env = append $env (dict "name" "OTEL_TRACES_SAMPLER" "value" .) }}
{{- end }}
{{- if contains "traceidratio" (.Values.otel.sampler | default "") }}
{{- $env = append $env (dict "name" "OTEL_TRACES_SAMPLER_ARG" "value" (toString .Values.otel.samplerRatio)) }}
{{- end }}
{{- with .Values.otel.resourceAttributes }}
{{- $env = append $env (dict "name" "OTEL_RESOURCE_ATTRIBUTES" "value" .) }}
{{- end }}
{{- $env | toJson }}
{{- else }}
{{- list | toJson }}
{{- end }}
{{- end }}

{{/*
Checks the schema cannot express; a clear message instead of a broken install.
*/}}
{{- define "modelroute.validate" -}}
{{- $ports := .Values.operator.ports }}
{{- if or (eq (int $ports.grpc) (int $ports.webhook)) (eq (int $ports.grpc) (int $ports.admin)) (eq (int $ports.webhook) (int $ports.admin)) }}
{{- fail (printf "operator.ports must be three different ports (grpc %v, webhook %v, admin %v)" $ports.grpc $ports.webhook $ports.admin) }}
{{- end }}
{{- if eq (int .Values.sidecar.port) (int .Values.sidecar.adminPort) }}
{{- fail (printf "sidecar.port and sidecar.adminPort must differ (both %v)" .Values.sidecar.port) }}
{{- end }}
{{- if and (eq .Values.tls.mode "existingSecret") (not .Values.tls.caBundle) }}
{{- fail "tls.caBundle (base64 of the CA's PEM) is required with tls.mode=existingSecret: the API server checks the webhook's certificate with it" }}
{{- end }}
{{- end }}
