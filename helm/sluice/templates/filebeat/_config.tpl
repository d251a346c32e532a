{{- define "sluice.filebeat.defaultConfig" -}}
filebeat.inputs:
  - type: filestream
    id: sluice-containers
    paths:
      - /var/log/containers/*_${NAMESPACE}_*.log
    parsers:
      - container: {}
      - ndjson:
          target: ""
          overwrite_keys: true
          expand_keys: true
          ignore_decoding_error: true
    processors:
      - add_kubernetes_metadata:
          host: ${NODE_NAME}
          matchers:
            - logs_path:
                logs_path: /var/log/containers/
output.elasticsearch:
  hosts: ["${ELASTICSEARCH_HOSTS}"]
{{- end -}}
