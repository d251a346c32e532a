{{/*
Shared workload templates. Each is called with (dict "root" $ "svc" "<component>"); the
per-component files under templates/<component>/ only choose which ones to render.
*/}}

{{/* Deployment of one component; its env and extra volumes come from "sluice.<svc>.env" and friends. */}}
{{- define "sluice.deployment" -}}
{{- $root := .root -}}
{{- $values := index $root.Values .svc -}}
{{- $global := $root.Values.global -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "sluice.component" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "sluice.componentLabels" . | nindent 4 }}
spec:
  {{- if not $values.autoscaling.enabled }}
  replicas: {{ $values.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "sluice.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "sluice.componentLabels" . | nindent 8 }}
      {{- $checksums := include (printf "sluice.%s.checksums" .svc) . }}
      {{- if or $checksums $values.podAnnotations }}
      annotations:
        {{- with $checksums }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "sluice.serviceAccountName" . }}
      automountServiceAccountToken: {{ include (printf "sluice.%s.needsApiToken" .svc) . }}
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "sluice.terminationGrace" . }}
      securityContext:
        {{- toYaml $global.podSecurityContext | nindent 8 }}
      {{- with $global.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      containers:
        - name: {{ .svc }}
          image: {{ include "sluice.image" . }}
          imagePullPolicy: {{ $global.image.pullPolicy }}
          securityContext:
            {{- toYaml $global.containerSecurityContext | nindent 12 }}
          ports:
            {{- include (printf "sluice.%s.ports" .svc) . | nindent 12 }}
          env:
            - name: SLUICE_LOG__LEVEL
              value: {{ $global.logLevel | quote }}
            - name: SLUICE_LOG__FORMAT
              value: {{ $global.logFormat | quote }}
            {{- include (printf "sluice.%s.env" .svc) . | nindent 12 }}
            {{- with $values.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if and (eq .svc "orchestrator") $root.Values.secrets.existingSecret }}
          # The orchestrator resolves `${NAME}` (alert webhooks, local jobs) from its environment.
          envFrom:
            - secretRef:
                name: {{ $root.Values.secrets.existingSecret }}
          {{- end }}
          {{- include (printf "sluice.%s.probes" .svc) . | nindent 10 }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", "{{ $global.preStopSeconds }}"]
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with include (printf "sluice.%s.volumeMounts" .svc) . }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $values.tmpSizeLimit }}
        {{- with include (printf "sluice.%s.volumes" .svc) . }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* Ports, env, probes and volumes shared by the three gRPC services. */}}
{{- define "sluice.grpc.ports" -}}
{{- $values := index .root.Values .svc -}}
- name: grpc
  containerPort: {{ $values.port }}
  protocol: TCP
- name: metrics
  containerPort: {{ $values.metricsPort }}
  protocol: TCP
{{- end -}}

{{- define "sluice.grpc.env" -}}
{{- $values := index .root.Values .svc -}}
- name: SLUICE_GRPC__PORT
  value: {{ $values.port | quote }}
- name: SLUICE_GRPC__GRACE_SECONDS
  value: {{ $values.drainSeconds | quote }}
- name: SLUICE_METRICS__PORT
  value: {{ $values.metricsPort | quote }}
{{- end -}}

{{/* Native gRPC probes (grpc.health.v1, overall service ""). */}}
{{- define "sluice.grpc.probes" -}}
{{- $values := index .root.Values .svc -}}
startupProbe:
  grpc:
    port: {{ $values.port }}
  periodSeconds: 2
  failureThreshold: 60
readinessProbe:
  grpc:
    port: {{ $values.port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
livenessProbe:
  grpc:
    port: {{ $values.port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}

{{/* The pipeline-secrets volume of the extractor and loader (`${NAME}` references as files). */}}
{{- define "sluice.secrets.env" -}}
{{- if .root.Values.secrets.existingSecret }}
- name: SLUICE_SECRETS_DIR
  value: /etc/sluice/secrets
{{- end }}
{{- end -}}

{{- define "sluice.secrets.volumeMounts" -}}
{{- if .root.Values.secrets.existingSecret -}}
- name: pipeline-secrets
  mountPath: /etc/sluice/secrets
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sluice.secrets.volumes" -}}
{{- if .root.Values.secrets.existingSecret -}}
- name: pipeline-secrets
  secret:
    secretName: {{ .root.Values.secrets.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* Headless Service of a gRPC component: DNS returns every ready pod, round_robin uses them all. */}}
{{- define "sluice.headlessService" -}}
{{- $values := index .root.Values .svc -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "sluice.component" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "sluice.componentLabels" . | nindent 4 }}
    sluice.io/metrics: "true"
spec:
  clusterIP: None
  publishNotReadyAddresses: false
  selector:
    {{- include "sluice.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $values.port }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    - name: metrics
      port: {{ $values.metricsPort }}
      targetPort: metrics
      protocol: TCP
{{- end -}}

{{/* autoscaling/v2 HPA: CPU by default, extra metrics and behavior passed through. */}}
{{- define "sluice.hpa" -}}
{{- $values := index .root.Values .svc -}}
{{- if $values.autoscaling.enabled }}
{{- $a := $values.autoscaling -}}
{{- if and (not $a.targetCPUUtilizationPercentage) (not $a.metrics) }}
{{- fail (printf "%s.autoscaling: set targetCPUUtilizationPercentage or metrics (an HPA needs at least one metric)" .svc) }}
{{- end }}
{{- if lt (int $a.maxReplicas) (int $a.minReplicas) }}
{{- fail (printf "%s.autoscaling: maxReplicas (%v) is below minReplicas (%v)" .svc $a.maxReplicas $a.minReplicas) }}
{{- end }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "sluice.component" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "sluice.componentLabels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "sluice.component" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    {{- if $a.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- end }}
    {{- with $a.metrics }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "sluice.pdb" -}}
{{- $values := index .root.Values .svc -}}
{{- if $values.pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "sluice.component" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "sluice.componentLabels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $values.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "sluice.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* ServiceAccount with the GKE Workload Identity annotation when a Google SA is set. */}}
{{- define "sluice.serviceAccount" -}}
{{- $values := index .root.Values .svc -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "sluice.serviceAccountName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "sluice.componentLabels" . | nindent 4 }}
  {{- if or $values.serviceAccount.gcpServiceAccount $values.serviceAccount.annotations }}
  annotations:
    {{- with $values.serviceAccount.gcpServiceAccount }}
    iam.gke.io/gcp-service-account: {{ . }}
    {{- end }}
    {{- with $values.serviceAccount.annotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}
