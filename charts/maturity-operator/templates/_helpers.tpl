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

{{/* The webhook's certificate: refuse a Secret of one's own without its CA (unless cert-manager injects it). */}}
{{- define "mo.checkWebhook" -}}
{{- if and (eq (include "mo.webhook" .) "true") .Values.webhook.certSecret (not .Values.webhook.certManager.enabled) (not .Values.webhook.caBundle) -}}
{{- fail "webhook.certSecret needs webhook.caBundle (the base64 PEM of the CA that signed it), which the chart puts into the MutatingWebhookConfiguration; or let cert-manager inject it: webhook.certManager.enabled=true" -}}
{{- end -}}
{{- if and .Values.webhook.certSecret .Values.webhook.certManager.enabled -}}
{{- fail "webhook.certSecret and webhook.certManager.enabled both name the webhook's certificate: drop one of them" -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the webhook's certificate. */}}
{{- define "mo.webhookSecret" -}}
{{- .Values.webhook.certSecret | default (printf "%s-webhook-cert" (include "mo.fullname" .)) -}}
{{- end -}}

{{/* The chart-made webhook certificate (tls.crt, tls.key, ca.crt, base64): the Secret's
data when it exists (lookup), else a new CA and certificate, made once per render. */}}
{{- define "mo.webhookCert" -}}
{{- if not (hasKey .Values "__moWebhookCert") -}}
{{- $name := include "mo.webhookSecret" . -}}
{{- $svc := printf "%s-webhook.%s.svc" (include "mo.fullname" .) .Release.Namespace -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name -}}
{{- if and $existing $existing.data (index $existing.data "ca.crt") -}}
{{- $_ := set .Values "__moWebhookCert" (dict "tls.crt" (index $existing.data "tls.crt") "tls.key" (index $existing.data "tls.key") "ca.crt" (index $existing.data "ca.crt")) -}}
{{- else -}}
{{- $ca := genCA "maturity-operator-webhook-ca" 3650 -}}
{{- $cert := genSignedCert $svc nil (list $svc (printf "%s.cluster.local" $svc)) 3650 $ca -}}
{{- $_ := set .Values "__moWebhookCert" (dict "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc) "ca.crt" ($ca.Cert | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- toYaml (get .Values "__moWebhookCert") -}}
{{- end -}}

{{/* The opt-in label of the canary hook as key=value (the first of matchLabels). */}}
{{- define "mo.optInLabel" -}}
{{- range $k, $v := .Values.webhook.namespaceSelector.matchLabels -}}{{ $k }}={{ $v }}{{- break -}}{{- end -}}
{{- end -}}
