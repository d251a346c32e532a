{{- define "sluice.orchestrator.ports" -}}
- name: http
  containerPort: {{ .root.Values.orchestrator.port }}
  protocol: TCP
{{- end -}}

{{/* HTTP probes; the startup probe leaves time for the state-DB migrations run at start. */}}
{{- define "sluice.orchestrator.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 2
  failureThreshold: 150
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}

{{- define "sluice.orchestrator.needsApiToken" -}}
{{- eq .root.Values.orchestrator.jobs.runner "kubernetes" -}}
{{- end -}}

{{- define "sluice.jobServiceAccountName" -}}
{{- default (printf "%s-job" (include "sluice.fullname" .)) .Values.orchestrator.jobs.serviceAccount.name -}}
{{- end -}}

{{- define "sluice.pipelinesConfigMap" -}}
{{- default (printf "%s-pipelines" (include "sluice.fullname" .)) .Values.orchestrator.pipelines.existingConfigMap -}}
{{- end -}}

{{- define "sluice.orchestrator.env" -}}
{{- $o := .root.Values.orchestrator -}}
- name: SLUICE_HTTP__PORT
  value: {{ $o.port | quote }}
- name: SLUICE_STATE__URL
  valueFrom:
    secretKeyRef:
      name: {{ required "orchestrator.state.existingSecret: name a Secret holding the state-DB URL" $o.state.existingSecret }}
      key: {{ $o.state.key }}
- name: SLUICE_PIPELINES__DIR
  value: /etc/sluice/pipelines
- name: SLUICE_LOADER__TARGET
  value: {{ include "sluice.grpcTarget" (dict "root" .root "svc" "loader") | quote }}
- name: SLUICE_LOADER__LOAD_BALANCING
  value: round_robin
- name: SLUICE_EXTRACTOR__TARGET
  value: {{ include "sluice.grpcTarget" (dict "root" .root "svc" "extractor") | quote }}
- name: SLUICE_EXTRACTOR__LOAD_BALANCING
  value: round_robin
- name: SLUICE_EXECUTION__MAX_UNITS_IN_FLIGHT
  value: {{ $o.execution.maxUnitsInFlight | quote }}
- name: SLUICE_EXECUTION__MAX_ACTIVE_RUNS
  value: {{ $o.execution.maxActiveRuns | quote }}
- name: SLUICE_SCHEDULER__REPLICA_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- if $o.auth.disabled }}
- name: SLUICE_AUTH__DISABLED
  value: "true"
{{- else }}
- name: SLUICE_AUTH__TOKENS_FILE
  value: {{ printf "/etc/sluice/auth/%s" $o.auth.key | quote }}
{{- end }}
- name: SLUICE_JOBS__RUNNER
  value: {{ $o.jobs.runner | quote }}
- name: SLUICE_JOBS__NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: SLUICE_JOBS__SERVICE_ACCOUNT
  value: {{ include "sluice.jobServiceAccountName" .root | quote }}
- name: SLUICE_JOBS__TTL_SECONDS_AFTER_FINISHED
  value: {{ $o.jobs.ttlSecondsAfterFinished | quote }}
{{- $baseUrl := $o.alerts.baseUrl -}}
{{- if and (not $baseUrl) $o.ingress.enabled $o.ingress.host }}
{{- $baseUrl = printf "%s://%s" (ternary "https" "http" (gt (len $o.ingress.tls) 0)) $o.ingress.host -}}
{{- end }}
{{- with $baseUrl }}
- name: SLUICE_ALERTS__BASE_URL
  value: {{ . | quote }}
{{- end }}
{{- if $o.alerts.smtpHost }}
- name: SLUICE_ALERTS__SMTP_HOST
  value: {{ $o.alerts.smtpHost | quote }}
- name: SLUICE_ALERTS__SMTP_PORT
  value: {{ $o.alerts.smtpPort | quote }}
- name: SLUICE_ALERTS__SMTP_STARTTLS
  value: {{ $o.alerts.smtpStarttls | quote }}
- name: SLUICE_ALERTS__EMAIL_FROM
  value: {{ $o.alerts.emailFrom | quote }}
{{- with $o.alerts.smtpExistingSecret }}
- name: SLUICE_ALERTS__SMTP_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: username
- name: SLUICE_ALERTS__SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: password
{{- end }}
{{- end }}
{{- end -}}

{{- define "sluice.orchestrator.volumeMounts" -}}
- name: pipelines
  mountPath: /etc/sluice/pipelines
  readOnly: true
{{- if not .root.Values.orchestrator.auth.disabled }}
- name: auth
  mountPath: /etc/sluice/auth
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sluice.orchestrator.volumes" -}}
- name: pipelines
  configMap:
    name: {{ include "sluice.pipelinesConfigMap" .root }}
{{- if not .root.Values.orchestrator.auth.disabled }}
- name: auth
  secret:
    secretName: {{ required "orchestrator.auth.existingSecret: name a Secret with the API tokens, or set orchestrator.auth.disabled" .root.Values.orchestrator.auth.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* No restart on pipeline changes: the orchestrator reloads the mounted ConfigMap itself
(SLUICE_PIPELINES__RELOAD_SECONDS), so runs in flight are not interrupted. */}}
{{- define "sluice.orchestrator.checksums" -}}{{- end -}}
