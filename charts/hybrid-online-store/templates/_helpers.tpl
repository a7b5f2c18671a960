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
