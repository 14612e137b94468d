{{- define "gantry.name" -}}{{ .Release.Name }}-admission{{- end -}}

{{- define "gantry.labels" -}}
app.kubernetes.io/name: gantry
app.kubernetes.io/component: admission
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "gantry.selector" -}}
app.kubernetes.io/name: gantry
app.kubernetes.io/component: admission
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gantry.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end -}}

{{- define "gantry.tlsSecret" -}}
{{- if eq .Values.admission.tls.mode "secret" -}}
{{ required "admission.tls.existingSecret is required with tls.mode=secret" .Values.admission.tls.existingSecret }}
{{- else -}}
{{ include "gantry.name" . }}-tls
{{- end -}}
{{- end -}}

{{/* Pipeline roles: receiver (gantry serve) and worker (gantry worker). */}}
{{- define "gantry.pipelineLabels" -}}
app.kubernetes.io/name: gantry
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version }}
{{- end -}}

{{- define "gantry.pipelineSelector" -}}
app.kubernetes.io/name: gantry
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* The restricted pod and container security contexts every Gantry pod uses. */}}
{{- define "gantry.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "gantry.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
capabilities: {drop: ["ALL"]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}
