{{/* Names, labels and small shared fragments of the ReviewPulse chart. */}}

{{- define "reviewpulse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "reviewpulse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The headless Service: stable per-pod DNS names for table routing and scraping. */}}
{{- define "reviewpulse.headlessName" -}}
{{- printf "%s-headless" (include "reviewpulse.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{- define "reviewpulse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "reviewpulse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reviewpulse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "reviewpulse.labels" -}}
helm.sh/chart: {{ include "reviewpulse.chart" . }}
{{ include "reviewpulse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reviewpulse
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata.annotations block, only when there is something to say. Call with (dict "ctx" $ "extra" map). */}}
{{- define "reviewpulse.annotations" -}}
{{- $all := merge (deepCopy (default dict .extra)) (default dict .ctx.Values.commonAnnotations) -}}
{{- with $all -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "reviewpulse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "reviewpulse.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* registry/repository:tag, or @digest when a digest is pinned. The tag defaults to appVersion. */}}
{{- define "reviewpulse.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* Which secret items this release uses; each is "true" or empty. */}}
{{- define "reviewpulse.usesKafkaSasl" -}}
{{- if hasPrefix "SASL" .Values.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}
{{- define "reviewpulse.usesRegistryAuth" -}}
{{- if .Values.schemaRegistry.basicAuth.enabled -}}true{{- end -}}
{{- end -}}
{{- define "reviewpulse.usesLlmApiKey" -}}
{{- if .Values.llm.apiKey.enabled -}}true{{- end -}}
{{- end -}}
{{- define "reviewpulse.usesWebToken" -}}
{{- if .Values.web.auth.enabled -}}true{{- end -}}
{{- end -}}
{{- define "reviewpulse.usesSecret" -}}
{{- if or (include "reviewpulse.usesKafkaSasl" .) (include "reviewpulse.usesRegistryAuth" .) (include "reviewpulse.usesLlmApiKey" .) (include "reviewpulse.usesWebToken" .) -}}true{{- end -}}
{{- end -}}

{{/* The Secret the pods read: the existing one, or the one this chart creates. */}}
{{- define "reviewpulse.secretName" -}}
{{- default (include "reviewpulse.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
An environment variable value as a string. Helm reads numbers as float64, so a plain
toString would turn 1000000 into "1e+06"; whole numbers are printed as integers.
*/}}
{{- define "reviewpulse.envValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq (float64 (int64 .)) . -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* Stable URL of one worker, as other workers reach it for table routing. */}}
{{- define "reviewpulse.advertisedUrl" -}}
{{- printf "http://$(POD_NAME).%s.%s.svc.%s:%d" (include "reviewpulse.headlessName" .) .Release.Namespace .Values.clusterDomain (int .Values.web.port) -}}
{{- end -}}

{{/* PromQL matchers scoping every rule to this release's scraped workers. */}}
{{- define "reviewpulse.metricSelector" -}}
{{- if .Values.prometheusRule.selector -}}
{{- .Values.prometheusRule.selector -}}
{{- else -}}
{{- printf "namespace=%q,job=%q" .Release.Namespace (include "reviewpulse.headlessName" .) -}}
{{- end -}}
{{- end -}}

{{/* Partitions of the topics the app creates, when values say so; empty otherwise. */}}
{{- define "reviewpulse.partitions" -}}
{{- $p := index .Values.config "topic_partitions" -}}
{{- if not (kindIs "invalid" $p) -}}{{ int $p }}{{- end -}}
{{- end -}}

{{/* The memory.* values that are settings, and their variables. */}}
{{- define "reviewpulse.memoryBounds" -}}
enrichBacklog: REVIEWPULSE_ENRICH_BACKLOG_MAX_BYTES
llmCache: REVIEWPULSE_CACHE_MAX_BYTES
webHistory: REVIEWPULSE_WEB_HISTORY_MAX_BYTES
webRecent: REVIEWPULSE_WEB_RECENT_MAX_BYTES
schemaCache: REVIEWPULSE_SCHEMA_CACHE_MAX_BYTES
{{- end -}}

{{/* A Kubernetes byte quantity (512Mi, 1Gi, 500M, 1048576) as an integer number of bytes. */}}
{{- define "reviewpulse.bytes" -}}
{{- $q := . -}}
{{- if or (kindIs "float64" $q) (kindIs "int" $q) (kindIs "int64" $q) -}}
{{- int64 $q -}}
{{- else -}}
{{- $s := toString $q -}}
{{- $num := regexFind "^[0-9]+" $s -}}
{{- $unit := trimPrefix $num $s -}}
{{- $mult := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- if or (not $num) (not (hasKey $mult $unit)) -}}
{{- fail (printf "reviewpulse: %q is not a byte quantity: write an integer, or one followed by Ki, Mi, Gi, Ti, k, M, G or T." $s) -}}
{{- end -}}
{{- mul (int64 $num) (index $mult $unit) -}}
{{- end -}}
{{- end -}}
