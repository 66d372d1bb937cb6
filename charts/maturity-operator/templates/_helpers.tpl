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

{{/* "true" when the admission webhook runs: it holds canaries' rollouts, records the
authors of drills and canaries (not needed for drills alone when single-tenant), and records
the attestations and exemption approvals of assessments. */}}
{{- define "mo.webhook" -}}
{{- if or .Values.controllers.canaries (and .Values.controllers.drills (not .Values.tenancy.singleTenant)) .Values.controllers.assessments -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when the operator keeps the key of its proofs (authors; attestations and exemptions). */}}
{{- define "mo.proofs" -}}
{{- if or (eq (include "mo.authors" .) "true") .Values.controllers.assessments -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when actions are checked against their authors (drills or canaries, multi-tenant). */}}
{{- define "mo.authors" -}}
{{- if and (or .Values.controllers.canaries .Values.controllers.drills) (not .Values.tenancy.singleTenant) -}}
true
{{- end -}}
{{- end -}}

{{/* /metrics: the operator serves it reviewed by the API server, over HTTPS unless metrics.tls is false. */}}
{{- define "mo.metricsScheme" -}}
{{- if .Values.metrics.tls }}https{{ else }}http{{ end -}}
{{- end -}}

{{- define "mo.checkMetrics" -}}
{{- if eq .Values.metrics.auth "none" -}}
{{- fail "metrics.auth=none: the operator serves unauthenticated /metrics only on a loopback address, and the kubelet's probes and Prometheus reach the pod's own address; keep metrics.auth=kubernetes and bind <release>-maturity-operator-metrics-reader to your Prometheus's ServiceAccount" -}}
{{- end -}}
{{- if and .Values.metrics.certSecret (not .Values.metrics.tls) -}}
{{- fail "metrics.certSecret is a certificate for HTTPS, which metrics.tls=false turns off: drop one of them" -}}
{{- end -}}
{{- end -}}
