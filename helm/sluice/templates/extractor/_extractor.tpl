{{- define "sluice.extractor.ports" -}}{{ include "sluice.grpc.ports" . }}{{- end -}}
{{- define "sluice.extractor.probes" -}}{{ include "sluice.grpc.probes" . }}{{- end -}}
{{- define "sluice.extractor.needsApiToken" -}}false{{- end -}}
{{- define "sluice.extractor.env" -}}
{{ include "sluice.grpc.env" . }}
{{- include "sluice.secrets.env" . }}
{{- end -}}
{{- define "sluice.extractor.volumeMounts" -}}{{ include "sluice.secrets.volumeMounts" . }}{{- end -}}
{{- define "sluice.extractor.volumes" -}}{{ include "sluice.secrets.volumes" . }}{{- end -}}
{{- define "sluice.extractor.checksums" -}}{{- end -}}
