{{- define "sluice.loader.ports" -}}{{ include "sluice.grpc.ports" . }}{{- end -}}
{{- define "sluice.loader.probes" -}}{{ include "sluice.grpc.probes" . }}{{- end -}}
{{- define "sluice.loader.needsApiToken" -}}false{{- end -}}
{{- define "sluice.loader.env" -}}
{{ include "sluice.grpc.env" . }}
- name: SLUICE_TRANSFORMER__TARGET
  value: {{ include "sluice.grpcTarget" (dict "root" .root "svc" "transformer") | quote }}
- name: SLUICE_TRANSFORMER__LOAD_BALANCING
  value: round_robin
- name: SLUICE_EXTRACTOR__TARGET
  value: {{ include "sluice.grpcTarget" (dict "root" .root "svc" "extractor") | quote }}
- name: SLUICE_EXTRACTOR__LOAD_BALANCING
  value: round_robin
{{- include "sluice.secrets.env" . }}
{{- end -}}
{{- define "sluice.loader.volumeMounts" -}}{{ include "sluice.secrets.volumeMounts" . }}{{- end -}}
{{- define "sluice.loader.volumes" -}}{{ include "sluice.secrets.volumes" . }}{{- end -}}
{{- define "sluice.loader.checksums" -}}{{- end -}}
