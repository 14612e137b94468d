{{/* NATS: the chart's own JetStream cluster, or nats.external. */}}
{{- define "gantry.natsExternal" -}}
{{- if .Values.nats.external.url }}true{{ end -}}
{{- end -}}

{{- define "gantry.natsName" -}}{{ .Release.Name }}-nats{{- end -}}

{{/* The Secret with the NATS credentials of role (receiver, worker, admin). */}}
{{- define "gantry.natsRoleSecret" -}}
{{- $root := .root -}}
{{- if $root.Values.nats.external.url -}}
{{ required (printf "nats.external.credentials.%s is required with nats.external.url: a Secret with that role's NATS credentials file under \"nats.creds\" (an external NATS without per-role users would let any pod queue runs)" .role) (get $root.Values.nats.external.credentials .role) }}
{{- else if eq $root.Values.nats.tls.mode "secret" -}}
{{ required (printf "nats.tls.secrets.%s is required with nats.tls.mode=secret" .role) (get $root.Values.nats.tls.secrets .role) }}
{{- else -}}
{{ include "gantry.natsName" $root }}-{{ .role }}
{{- end -}}
{{- end -}}

{{/* Volume and mount of the role's NATS credentials at /etc/gantry/nats. */}}
{{- define "gantry.natsVolumeMount" -}}
- {name: nats, mountPath: /etc/gantry/nats, readOnly: true}
{{- end -}}

{{- define "gantry.natsVolume" -}}
{{- $root := .root -}}
- name: nats
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "gantry.natsRoleSecret" . }}
          {{- if $root.Values.nats.external.url }}
          items: [{key: nats.creds, path: nats.creds}]
          {{- else }}
          items: [{key: ca.crt, path: ca.crt}, {key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]
          {{- end }}
      {{- if and $root.Values.nats.external.url $root.Values.nats.external.caSecret }}
      - secret:
          name: {{ $root.Values.nats.external.caSecret }}
          items: [{key: ca.crt, path: ca.crt}]
      {{- end }}
{{- end -}}

{{/* Each role subscribes to its own reply subjects only. */}}
{{- define "gantry.natsEnv" -}}
- {name: GANTRY_QUEUE_INBOX_PREFIX, value: "_INBOX.{{ .role }}"}
{{- end -}}

{{/* The queue section's connection settings for the roles. */}}
{{- define "gantry.natsQueueConfig" -}}
{{- $q := dict "provisioned" true -}}
{{- if .Values.nats.external.url -}}
{{- $_ := set $q "natsURL" .Values.nats.external.url -}}
{{- $_ := set $q "credsFile" "/etc/gantry/nats/nats.creds" -}}
{{- $_ := set $q "replicas" (int .Values.nats.external.replicas) -}}
{{- if .Values.nats.external.caSecret -}}
{{- $_ := set $q "tlsCAFile" "/etc/gantry/nats/ca.crt" -}}
{{- end -}}
{{- else -}}
{{- $_ := set $q "natsURL" (printf "tls://%s.%s.svc:4222" (include "gantry.natsName" .) .Release.Namespace) -}}
{{- $_ := set $q "tlsCAFile" "/etc/gantry/nats/ca.crt" -}}
{{- $_ := set $q "tlsCertFile" "/etc/gantry/nats/tls.crt" -}}
{{- $_ := set $q "tlsKeyFile" "/etc/gantry/nats/tls.key" -}}
{{- $_ := set $q "replicas" (int .Values.nats.cluster.size) -}}
{{- end -}}
{{- toJson $q -}}
{{- end -}}
