{{/*
Guards: refuse values that would deploy a broken or wasteful release, with a message that
says which value to change. Rendered from statefulset.yaml, so every install, upgrade and
template run passes through here. Types and enums are values.schema.json's job.
*/}}
{{- define "reviewpulse.validateValues" -}}
{{- $v := .Values -}}
{{- if not $v.kafka.bootstrapServers -}}
{{- fail "reviewpulse: kafka.bootstrapServers is required: the comma-separated host:port list of your Kafka brokers (Kafka is external to this chart)." -}}
{{- end -}}
{{- if not $v.schemaRegistry.url -}}
{{- fail "reviewpulse: schemaRegistry.url is required: the URL of your Confluent-compatible Schema Registry (Confluent, Karapace, Apicurio, Redpanda)." -}}
{{- end -}}
{{- if not $v.llm.baseUrl -}}
{{- fail "reviewpulse: llm.baseUrl is required: the OpenAI-compatible API base URL ending in /v1 (OpenAI, vLLM, Ollama, ...)." -}}
{{- end -}}
{{- if not $v.llm.model -}}
{{- fail "reviewpulse: llm.model is required: the model name sent to the LLM API and recorded on every enrichment." -}}
{{- end -}}
{{- $keda := $v.autoscaling.keda.enabled -}}
{{- $hpa := $v.autoscaling.hpa.enabled -}}
{{- if and $keda $hpa -}}
{{- fail "reviewpulse: autoscaling.keda.enabled and autoscaling.hpa.enabled are both true: enable one autoscaler (KEDA creates its own HPA; two would fight over the replica count)." -}}
{{- end -}}
{{- $partitions := include "reviewpulse.partitions" . -}}
{{- if $partitions -}}
{{- if and (not $keda) (not $hpa) (gt (int $v.replicaCount) (int $partitions)) -}}
{{- fail (printf "reviewpulse: replicaCount (%d) is larger than config.topic_partitions (%s): workers beyond the partition count sit idle. Lower replicaCount or raise config.topic_partitions." (int $v.replicaCount) $partitions) -}}
{{- end -}}
{{- range $kind := list "keda" "hpa" -}}
{{- $a := index $v.autoscaling $kind -}}
{{- if and $a.enabled (gt (int $a.maxReplicas) (int $partitions)) -}}
{{- fail (printf "reviewpulse: autoscaling.%s.maxReplicas (%d) is larger than config.topic_partitions (%s): workers beyond the partition count sit idle." $kind (int $a.maxReplicas) $partitions) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $kind := list "keda" "hpa" -}}
{{- $a := index $v.autoscaling $kind -}}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- fail (printf "reviewpulse: autoscaling.%s.minReplicas (%d) is larger than maxReplicas (%d)." $kind (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- $s := $v.secrets -}}
{{- $inline := list -}}
{{- range $k := list "llmApiKey" "kafkaSaslUsername" "kafkaSaslPassword" "schemaRegistryUsername" "schemaRegistryPassword" "webAuthToken" -}}
{{- if index $s $k -}}{{- $inline = append $inline (printf "secrets.%s" $k) -}}{{- end -}}
{{- end -}}
{{- if and $s.existingSecret $inline -}}
{{- fail (printf "reviewpulse: secrets.existingSecret (%s) and inline secrets (%s) are both set: put every secret in the existing Secret, or use inline values without existingSecret." $s.existingSecret (join ", " $inline)) -}}
{{- end -}}
{{- if not $s.existingSecret -}}
{{- if and (include "reviewpulse.usesKafkaSasl" .) (not (and $s.kafkaSaslUsername $s.kafkaSaslPassword)) -}}
{{- fail (printf "reviewpulse: kafka.securityProtocol is %s: set secrets.kafkaSaslUsername and secrets.kafkaSaslPassword, or secrets.existingSecret." $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if and (include "reviewpulse.usesRegistryAuth" .) (not (and $s.schemaRegistryUsername $s.schemaRegistryPassword)) -}}
{{- fail "reviewpulse: schemaRegistry.basicAuth.enabled is true: set secrets.schemaRegistryUsername and secrets.schemaRegistryPassword, or secrets.existingSecret." -}}
{{- end -}}
{{- if and (include "reviewpulse.usesLlmApiKey" .) (not $s.llmApiKey) -}}
{{- fail "reviewpulse: llm.apiKey.enabled is true but no key is given: set secrets.llmApiKey or secrets.existingSecret, or llm.apiKey.enabled=false for an endpoint without authentication." -}}
{{- end -}}
{{- if and (include "reviewpulse.usesWebToken" .) (not $s.webAuthToken) -}}
{{- fail "reviewpulse: web.auth.enabled is true: set secrets.webAuthToken or secrets.existingSecret." -}}
{{- end -}}
{{- end -}}
{{- with $v.resources.limits -}}{{- with .memory -}}
{{- $limit := int64 (include "reviewpulse.bytes" .) -}}
{{- $total := int64 (include "reviewpulse.bytes" $v.memory.baseAllowance) -}}
{{- range $value, $_ := include "reviewpulse.memoryBounds" $ | fromYaml -}}
{{- $total = add $total (int64 (include "reviewpulse.bytes" (index $v.memory $value))) -}}
{{- end -}}
{{- if gt $total $limit -}}
{{- fail (printf "reviewpulse: memory.baseAllowance plus the memory bounds (memory.enrichBacklog, llmCache, webHistory, webRecent, schemaCache) come to %d MiB, more than resources.limits.memory (%s, %d MiB): lower a bound or raise the limit (a worker past its limit is OOM-killed)." (div $total 1048576) (toString .) (div $limit 1048576)) -}}
{{- end -}}
{{- end -}}{{- end -}}
{{- range $e := $v.extraEnv -}}
{{- if and (hasPrefix "REVIEWPULSE_" $e.name) (has $e.name (list "REVIEWPULSE_WEB_HOST" "REVIEWPULSE_WEB_ADVERTISED_URL" "REVIEWPULSE_LLM_API_KEY_FILE")) -}}
{{- fail (printf "reviewpulse: extraEnv sets %s, which the chart manages; remove it." $e.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
