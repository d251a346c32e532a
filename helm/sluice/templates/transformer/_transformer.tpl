{{- define "sluice.transformer.ports" -}}{{ include "sluice.grpc.ports" . }}{{- end -}}
{{- define "sluice.transformer.probes" -}}{{ include "sluice.grpc.probes" . }}{{- end -}}
{{- define "sluice.transformer.needsApiToken" -}}false{{- end -}}
{{- define "sluice.transformer.env" -}}
{{ include "sluice.grpc.env" . }}
- name: SLUICE_EXTRACTOR__TARGET
  value: {{ include "sluice.grpcTarget" (dict "root" .root "svc" "extractor") | quote }}
- name: SLUICE_EXTRACTOR__LOAD_BALANCING
  value: round_robin
{{- end -}}
{{- define "sluice.transformer.volumeMounts" -}}{{- end -}}
{{- define "sluice.transformer.volumes" -}}{{- end -}}
{{- define "sluice.transformer.checksums" -}}{{- end -}}
