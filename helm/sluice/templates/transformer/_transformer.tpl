{{- define "sluice.transformer.ports" -}}{{ include "sluice.grpc.ports" . }}{{- end -}}
{{- define "sluice.transformer.probes" -}}{{ include "sluice.grpc.probes" . }}{{- end -}}
{{- define "sluice.transformer.needsApiToken" -}}false{{- end -}}
{{- define "sluice.transformer.env" -}}
{{ include "sluice.grpc.env" . }}
- name: SLUICE_EXTRACTOR__TARGET
  value: {{ include "sluice.grpcTarget" (dict "root" .root "svc" "extractor") | quote }}
- name: SLUICE_EXTRACTOR__LOAD_BALANCING
  value: round_robin
{{- include "sluice.secrets.env" . }}
{{- end -}}
{{- define "sluice.transformer.volumeMounts" -}}{{ include "sluice.secrets.volumeMounts" . }}{{- end -}}
{{- define "sluice.transformer.volumes" -}}{{ include "sluice.secrets.volumes" . }}{{- end -}}
{{- define "sluice.transformer.checksums" -}}{{- end -}}
