{{/*
Chart name, truncated to 63 characters (a DNS label).
*/}}
{{- define "hos.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: the release name when it already holds
the chart name, else <release>-<chart>; truncated to 63 characters.
*/}}
{{- define "hos.fullname" -}}
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

{{- define "hos.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels (stable across upgrades).
*/}}
{{- define "hos.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hos.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Common labels.
*/}}
{{- define "hos.labels" -}}
helm.sh/chart: {{ include "hos.chart" . }}
{{ include "hos.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hybrid-online-store
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "hos.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hos.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The leader-election Lease name.
*/}}
{{- define "hos.leaseName" -}}
{{- default (include "hos.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The operator image: repository@digest when a digest is set, else
repository:tag (tag defaults to the appVersion).
*/}}
{{- define "hos.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Whether the cluster serves a Prometheus Operator kind (argument: the kind,
e.g. "ServiceMonitor"). `helm install`/`upgrade` ask the API server; `helm
template` knows only what --api-versions says, either the group/version
(monitoring.coreos.com/v1) or the kind (monitoring.coreos.com/v1/ServiceMonitor).
*/}}
{{- define "hos.hasMonitoringAPI" -}}
{{- $caps := .root.Capabilities.APIVersions }}
{{- if or ($caps.Has (printf "monitoring.coreos.com/v1/%s" .kind)) ($caps.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}

{{/*
The namespaces whose proxy Services the proxies' ServiceMonitor looks in:
serviceMonitor.proxies.namespaces, else watchNamespace, else none (any).
*/}}
{{- define "hos.proxyNamespaces" -}}
{{- if .Values.serviceMonitor.proxies.namespaces }}
{{- toYaml .Values.serviceMonitor.proxies.namespaces }}
{{- else if .Values.watchNamespace }}
{{- toYaml (list .Values.watchNamespace) }}
{{- end }}
{{- end }}

{{/*
PromQL label matchers of the operator's series: its metrics Service's
namespace and job (the Prometheus Operator names the job after the Service).
*/}}
{{- define "hos.operatorSelector" -}}
{{- default (printf "namespace=%q, job=%q" .Release.Namespace (printf "%s-metrics" (include "hos.fullname" .))) .Values.prometheusRule.operatorSelector }}
{{- end }}
