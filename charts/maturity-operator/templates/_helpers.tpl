{{- define "mo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mo.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mo.labels" -}}
{{ include "mo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The --controllers list from the switches. */}}
{{- define "mo.controllers" -}}
{{- $c := list -}}
{{- if .Values.controllers.responseTimeTargets }}{{ $c = append $c "response-time-targets" }}{{ end -}}
{{- if .Values.controllers.canaries }}{{ $c = append $c "canaries" }}{{ end -}}
{{- if .Values.controllers.drills }}{{ $c = append $c "drills" }}{{ end -}}
{{- if .Values.controllers.assessments }}{{ $c = append $c "assessments" }}{{ end -}}
{{- join "," $c -}}
{{- end -}}

{{/* "true" when the admission webhook runs: it holds canaries' rollouts and records the
authors of drills and canaries (not needed for drills alone when single-tenant). */}}
{{- define "mo.webhook" -}}
{{- if or .Values.controllers.canaries (and .Values.controllers.drills (not .Values.tenancy.singleTenant)) -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when actions are checked against their authors (drills or canaries, multi-tenant). */}}
{{- define "mo.authors" -}}
{{- if and (or .Values.controllers.canaries .Values.controllers.drills) (not .Values.tenancy.singleTenant) -}}
true
{{- end -}}
{{- end -}}
