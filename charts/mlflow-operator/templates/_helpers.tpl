{{/* The chart's name, or nameOverride. */}}
{{- define "mlflow-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: <release>-<chart>, or just <release> when the release
name already contains the chart name; 63 characters at most (a DNS label).
*/}}
{{- define "mlflow-operator.fullname" -}}
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

{{- define "mlflow-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "mlflow-operator.labels" -}}
helm.sh/chart: {{ include "mlflow-operator.chart" . }}
{{ include "mlflow-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlflow-operator
{{- end }}

{{/* Labels that select the operator's pod; never change them (Deployment selectors are immutable). */}}
{{- define "mlflow-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlflow-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mlflow-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlflow-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The tag of the project's images: imageTag, or the chart's appVersion. */}}
{{- define "mlflow-operator.imageTag" -}}
{{- default .Chart.AppVersion .Values.imageTag }}
{{- end }}

{{/* The operator image: repository@digest, or repository:tag; the repository defaults to
<imageRegistry>/mlflow-operator and the tag to imageTag, the names `make images` gives. */}}
{{- define "mlflow-operator.image" -}}
{{- $repository := default (printf "%s/mlflow-operator" .Values.imageRegistry) .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default (include "mlflow-operator.imageTag" .) .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when user and group ids are the platform's to assign: `openshift`, or with "auto"
whether the cluster serves OpenShift's security.openshift.io API. */}}
{{- define "mlflow-operator.openshift" -}}
{{- if eq (toString .Values.openshift) "auto" }}
{{- .Capabilities.APIVersions.Has "security.openshift.io/v1" }}
{{- else }}
{{- eq (toString .Values.openshift) "true" }}
{{- end }}
{{- end }}

{{/* Labels that select the model cache's pods (a name of their own: the operator's Service
and Deployment never select them). */}}
{{- define "mlflow-operator.modelCacheSelectorLabels" -}}
app.kubernetes.io/name: mlflow-model-cache
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
