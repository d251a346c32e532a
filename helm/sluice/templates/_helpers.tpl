{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name prefix of every object: <release> when it already contains the chart name. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: <fullname>-<component>. Call with (dict "root" $ "svc" "extractor"). */}}
{{- define "sluice.component" -}}
{{- printf "%s-%s" (include "sluice.fullname" .root) .svc -}}
{{- end -}}

{{/* Labels shared by every object of the release. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end -}}

{{/* Labels that select the pods of the whole release (NetworkPolicy deny-all). */}}
{{- define "sluice.releaseSelector" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component. Call with (dict "root" $ "svc" "extractor"). */}}
{{- define "sluice.selectorLabels" -}}
{{ include "sluice.releaseSelector" .root }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{/* All labels of one component. */}}
{{- define "sluice.componentLabels" -}}
{{ include "sluice.labels" .root }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{/* Image reference of one component: <registry>/<image name>:<tag>; the tag defaults to appVersion. */}}
{{- define "sluice.image" -}}
{{- $values := index .root.Values .svc -}}
{{- $global := .root.Values.global.image -}}
{{- $tag := default (default .root.Chart.AppVersion $global.tag) $values.image.tag -}}
{{- if eq (toString $tag) "latest" -}}
{{- fail (printf "%s.image.tag: 'latest' is not allowed; pin a version or a digest so rollbacks are exact" .svc) -}}
{{- end -}}
{{- $repository := default (printf "%s/%s" $global.registry $values.image.name) $values.image.repository -}}
{{- if $values.image.digest -}}
{{- printf "%s@%s" $repository $values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount name of one component. */}}
{{- define "sluice.serviceAccountName" -}}
{{- $values := index .root.Values .svc -}}
{{- default (include "sluice.component" .) $values.serviceAccount.name -}}
{{- end -}}

{{/* gRPC target of a component, resolved over DNS so round_robin sees every pod of the headless Service. */}}
{{- define "sluice.grpcTarget" -}}
{{- $values := index .root.Values .svc -}}
{{- printf "dns:///%s:%d" (include "sluice.component" .) (int $values.port) -}}
{{- end -}}

{{/* Pod grace period: preStop delay + the drain window of one unit + a margin to exit. */}}
{{- define "sluice.terminationGrace" -}}
{{- $values := index .root.Values .svc -}}
{{- add (int .root.Values.global.preStopSeconds) (int (ceil $values.drainSeconds)) 15 -}}
{{- end -}}
