{{/* Names, labels, the model list and the merged per-model engine values. */}}

{{- define "llm-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llm-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A name of at most .max characters: the name itself when it fits, otherwise its head and the
first 8 hex digits of its sha256, so two long names never truncate to the same object name.
dict "name" NAME "max" N
*/}}
{{- define "llm-gateway.boundedName" -}}
{{- if le (len .name) (int .max) -}}
{{- .name -}}
{{- else -}}
{{- printf "%s-%s" (trunc (int (sub (int .max) 9)) .name | trimSuffix "-") (sha256sum .name | trunc 8) -}}
{{- end -}}
{{- end -}}

{{- define "llm-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "llm-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "llm-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* repository@digest when a digest is pinned, else repository:tag (tag "" = appVersion). */}}
{{- define "llm-gateway.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "llm-gateway.secretName" -}}
{{- default (printf "%s-secrets" (include "llm-gateway.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "llm-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llm-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The served models, as YAML: `models`, plus the example model when exampleModel.enabled.
*/}}
{{- define "llm-gateway.models" -}}
{{- $models := deepCopy (.Values.models | default dict) -}}
{{- if .Values.exampleModel.enabled -}}
{{- $_ := set $models .Values.exampleModel.name (omit .Values.exampleModel "enabled" "name") -}}
{{- end -}}
{{- if not $models -}}
{{- fail "no model to serve: add one under `models` (docs/deploy-kubernetes.md) or set exampleModel.enabled=true" -}}
{{- end -}}
{{- toYaml $models -}}
{{- end -}}

{{/* The default model: defaultModel, or the only model. */}}
{{- define "llm-gateway.defaultModel" -}}
{{- $models := fromYaml (include "llm-gateway.models" .) -}}
{{- if .Values.defaultModel -}}
{{- if not (hasKey $models .Values.defaultModel) -}}
{{- fail (printf "defaultModel %q is not one of models" .Values.defaultModel) -}}
{{- end -}}
{{- .Values.defaultModel -}}
{{- else if eq (len $models) 1 -}}
{{- keys $models | first -}}
{{- else -}}
{{- fail "defaultModel is required when several models are served" -}}
{{- end -}}
{{- end -}}

{{/* Engine workload name for one model: dict "root" $ "model" NAME (52 characters at most). */}}
{{- define "llm-gateway.engineName" -}}
{{- include "llm-gateway.boundedName" (dict "name" (printf "%s-engine-%s" (include "llm-gateway.fullname" .root) .model) "max" 52) -}}
{{- end -}}

{{/* engineDefaults overridden key by key by the model's `engine` block, as YAML. */}}
{{- define "llm-gateway.engineValues" -}}
{{- $merged := deepCopy .root.Values.engineDefaults -}}
{{- range $key, $value := (.spec.engine | default dict) -}}
{{- $_ := set $merged $key $value -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* Headless Service DNS name (host:port) the gateway resolves to engine pod IPs. */}}
{{- define "llm-gateway.engineDns" -}}
{{- $engine := fromYaml (include "llm-gateway.engineValues" .) -}}
{{- printf "%s.%s.svc.cluster.local:%v" (include "llm-gateway.engineName" .) .root.Release.Namespace $engine.port -}}
{{- end -}}

{{/*
Where a model's weights live under /models: a pinned Hugging Face download goes to
hf/<model>/<revision> (a new revision never overwrites the one running pods read), a
shipped GGUF to <model>. The settings' own `path` wins. dict "model" NAME "spec" SPEC
*/}}
{{- define "llm-gateway.modelDir" -}}
{{- $dl := .spec.download | default dict -}}
{{- $settings := .spec.settings | default dict -}}
{{- if $settings.path -}}
{{- $settings.path -}}
{{- else if $dl.repo -}}
{{- printf "/models/hf/%s/%s" .model $dl.revision -}}
{{- else -}}
{{- printf "/models/%s" .model -}}
{{- end -}}
{{- end -}}

{{- define "llm-gateway.draftDir" -}}
{{- printf "/models/hf/%s/draft-%s" .model .spec.download.draft.revision -}}
{{- end -}}

{{/*
A model's settings as the chart writes them into models.yaml: the values' settings plus the
weights' path and, with a downloaded draft, speculation.draft_path. dict "model" NAME "spec" SPEC
*/}}
{{- define "llm-gateway.modelSettings" -}}
{{- $settings := deepCopy (.spec.settings | default dict) -}}
{{- $dl := .spec.download | default dict -}}
{{- if and $dl.repo (not (regexMatch "^[0-9a-f]{40}$" ($dl.revision | default ""))) (not $dl.allowUnpinnedRevision) -}}
{{- fail (printf "model %s: download.revision must be a 40-character commit hash (got %q); set download.allowUnpinnedRevision=true to accept a branch or tag" .model ($dl.revision | default "")) -}}
{{- end -}}
{{- if $dl.repo -}}
{{- $_ := set $settings "path" (include "llm-gateway.modelDir" .) -}}
{{- end -}}
{{- if ($dl.draft | default dict).repo -}}
{{- $spec := deepCopy ($settings.speculation | default dict) -}}
{{- $_ := set $spec "draft_path" (include "llm-gateway.draftDir" .) -}}
{{- $_ := set $settings "speculation" $spec -}}
{{- end -}}
{{- toYaml $settings -}}
{{- end -}}

{{/*
The keys of a model's settings that only the gateway reads (gateway.settings.ModelSettings
beyond engine.config.EngineOptions): they stay out of the engine's ConfigMap, so a
gateway-only change (routing, tool parser, chat template) never restarts an engine.
tests/helm/test_chart.py checks this list against the settings.
*/}}
{{- define "llm-gateway.gatewaySettingKeys" -}}
enabled quantized replicas replicas_dns replica_api_key_env routing tool_parser chat_template embedding_dimensions fallbacks reasoning_parser reasoning_switch
{{- end -}}

{{/* The settings environment shared by gateway and engine containers. */}}
{{- define "llm-gateway.settingsEnv" -}}
- name: LLMGW_CONFIG_DIR
  value: /etc/llm-gateway
- name: LLMGW_PROFILE
  value: kubernetes
- name: LLMGW_MODEL_CACHE
  value: /models
- name: HOME
  value: /tmp
- name: HF_HOME
  value: /tmp/huggingface
{{- end -}}

{{/*
Where the gateway's books (ledger, keys, tenants, budgets, files) live: "volume" (the one
gateway's SQLite ledger on its data PersistentVolumeClaim) or "database" (a database URL:
the chart's PostgreSQL, secrets.databaseUrl, an existingSecret's with persistence off, or the
shared one several gateways need; /data is then an emptyDir and the pod does not start
without the URL). Never the ledger on an emptyDir: that fails the render.
*/}}
{{- define "llm-gateway.gatewayBooks" -}}
{{- $g := .Values.gateway -}}
{{- $s := .Values.secrets -}}
{{- $several := or $g.autoscaling.enabled (gt (int $g.replicas) 1) -}}
{{- if or $several .Values.postgresql.enabled $s.databaseUrl -}}
database
{{- else if $g.persistence.enabled -}}
volume
{{- else if $s.existingSecret -}}
database
{{- else -}}
{{- fail "gateway.persistence.enabled=false without a database URL would keep the ledger, keys and files on an emptyDir, lost at every rollout: keep gateway.persistence on, or set secrets.databaseUrl (or postgresql.enabled)" -}}
{{- end -}}
{{- end -}}

{{/* A storage quantity ("20Gi"; Mi, Gi or Ti) in bytes. */}}
{{- define "llm-gateway.quantityBytes" -}}
{{- $units := dict "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- $number := regexReplaceAll "^([0-9]+)(Mi|Gi|Ti)$" . "${1}" -}}
{{- $unit := regexReplaceAll "^([0-9]+)(Mi|Gi|Ti)$" . "${2}" -}}
{{- mul (int64 $number) (get $units $unit) -}}
{{- end -}}

{{- define "llm-gateway.secretEnv" -}}
{{- $s := .Values.secrets -}}
- name: {{ $s.env.adminKey }}
  valueFrom:
    secretKeyRef: {name: {{ include "llm-gateway.secretName" . }}, key: {{ $s.keys.adminKey }}}
# Required unless the books are on the gateway's volume: no ledger on an emptyDir.
- name: {{ $s.env.databaseUrl }}
  valueFrom:
    secretKeyRef: {name: {{ include "llm-gateway.secretName" . }}, key: {{ $s.keys.databaseUrl }}, optional: {{ eq (include "llm-gateway.gatewayBooks" .) "volume" }}}
- name: {{ $s.env.redisUrl }}
  valueFrom:
    secretKeyRef: {name: {{ include "llm-gateway.secretName" . }}, key: {{ $s.keys.redisUrl }}, optional: true}
- name: {{ $s.env.metricsToken }}
  valueFrom:
    secretKeyRef: {name: {{ include "llm-gateway.secretName" . }}, key: {{ $s.keys.metricsToken }}}
{{ include "llm-gateway.engineKeyEnv" (dict "root" . "name" $s.env.engineApiKey) }}
{{- end -}}

{{/* The engines' API key from the secret, as NAME: dict "root" $ "name" NAME */}}
{{- define "llm-gateway.engineKeyEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef: {name: {{ include "llm-gateway.secretName" .root }}, key: {{ .root.Values.secrets.keys.engineApiKey }}}
{{- end -}}

{{/* The chart-wide pod securityContext (restricted profile) merged with a workload's own. */}}
{{- define "llm-gateway.podSecurityContext" -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.podSecurityContext) (.own | default dict)) -}}
{{- end -}}

{{- define "llm-gateway.containerSecurityContext" -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.containerSecurityContext) (.own | default dict)) -}}
{{- end -}}

{{/*
Downloads of pinned Hugging Face snapshots: argv is tokenizer-only ("true"/"false") then
(repo, revision, folder) triples. A lock beside each folder lets one replica download while
the others wait; a marker makes later starts (a scale-out, a restart) skip it entirely.
*/}}
{{- define "llm-gateway.fetchScript" -}}
import fcntl, sys
from pathlib import Path
from huggingface_hub import snapshot_download
only = sys.argv[1] == "true"
patterns = ["*.json", "*.jinja", "tokenizer*", "*.model", "*.txt"] if only else None
rest = sys.argv[2:]
for repo, revision, folder in zip(rest[0::3], rest[1::3], rest[2::3]):
    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    done = target / (".llm-gateway-tokenizer" if only else ".llm-gateway-complete")
    with open(f"{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            snapshot_download(repo_id=repo, revision=revision, local_dir=target, allow_patterns=patterns)
            done.touch()
    print(f"{repo}@{revision}: ready in {target}", flush=True)
{{- end -}}

{{/*
Init container that puts a model where its settings point:
dict "root" $ "model" NAME "spec" SPEC "tokenizerOnly" BOOL "image" IMAGE "pullPolicy" P
A shipped GGUF is converted by `llm-gateway models prepare` (under a lock, same reasons).
*/}}
{{- define "llm-gateway.modelInit" -}}
{{- $dl := .spec.download | default dict -}}
{{- $draft := $dl.draft | default dict -}}
- name: {{ include "llm-gateway.boundedName" (dict "name" (printf "fetch-%s" .model) "max" 63) }}
  image: {{ .image }}
  imagePullPolicy: {{ .pullPolicy }}
  env:
    {{- include "llm-gateway.settingsEnv" .root | nindent 4 }}
    - name: HF_HUB_OFFLINE
      value: {{ ternary "0" "1" (not (empty $dl.repo)) | quote }}
    {{- if and $dl.repo $dl.hfTokenSecret }}
    - name: HF_TOKEN
      valueFrom:
        secretKeyRef: {name: {{ $dl.hfTokenSecret }}, key: token}
    {{- end }}
  {{- if $dl.repo }}
  command:
    - python3
    - -c
    - {{ include "llm-gateway.fetchScript" . | quote }}
    - {{ .tokenizerOnly | quote }}
    - {{ $dl.repo | quote }}
    - {{ $dl.revision | quote }}
    - {{ include "llm-gateway.modelDir" . | quote }}
    {{- if and $draft.repo (not .tokenizerOnly) }}
    - {{ $draft.repo | quote }}
    - {{ $draft.revision | quote }}
    - {{ include "llm-gateway.draftDir" . | quote }}
    {{- end }}
  {{- else }}
  command: ["flock", {{ printf "/models/.%s.lock" .model | quote }}, "llm-gateway", "models", "prepare", "--model", {{ .model | quote }}]
  {{- end }}
  resources:
    {{- toYaml .root.Values.fetchResources | nindent 4 }}
  securityContext:
    {{- include "llm-gateway.containerSecurityContext" (dict "root" .root "own" .securityContext) | nindent 4 }}
  volumeMounts:
    - {name: config, mountPath: /etc/llm-gateway, readOnly: true}
    - {name: models, mountPath: /models}
    - {name: tmp, mountPath: /tmp}
{{- end -}}

{{/* The gateway's settings: every model, each pointing at its engines' headless Service. */}}
{{- define "llm-gateway.gatewayConfigData" -}}
{{- $root := . -}}
{{- $models := fromYaml (include "llm-gateway.models" .) -}}
gateway.yaml: |
  {{- toYaml .Values.config.gateway | nindent 2 }}
prices.yaml: |
  prices:
    {{- toYaml .Values.config.prices | nindent 4 }}
models.yaml: |
  default_model: {{ include "llm-gateway.defaultModel" . }}
  models:
  {{- range $name, $spec := $models }}
    {{ $name }}:
      {{- $settings := fromYaml (include "llm-gateway.modelSettings" (dict "model" $name "spec" $spec)) }}
      {{- $_ := set $settings "replicas_dns" (include "llm-gateway.engineDns" (dict "root" $root "model" $name "spec" $spec)) }}
      {{- $_ := set $settings "replica_api_key_env" $root.Values.secrets.env.engineApiKey }}
      {{- toYaml $settings | nindent 6 }}
  {{- end }}
profile.yaml: |
  # Written by the chart: everything lives in gateway.yaml and models.yaml.
  {}
{{- end -}}

{{/* One engine's settings: its model alone, with the keys the engine reads. */}}
{{- define "llm-gateway.engineConfigData" -}}
{{- $settings := fromYaml (include "llm-gateway.modelSettings" .) -}}
{{- $engine := omit $settings -}}
{{- range splitList " " (include "llm-gateway.gatewaySettingKeys" .) -}}
{{- $engine = omit $engine . -}}
{{- end -}}
models.yaml: |
  default_model: {{ .model }}
  models:
    {{ .model }}:
      {{- toYaml $engine | nindent 6 }}
profile.yaml: |
  # Written by the chart: this engine's model lives in models.yaml.
  {}
{{- end -}}

{{- define "llm-gateway.configVolume" -}}
- name: config
  configMap:
    name: {{ .name }}
    items:
      {{- range .keys }}
      - {key: {{ . }}, path: {{ . }}}
      {{- end }}
      - {key: profile.yaml, path: profiles/kubernetes.yaml}
{{- end -}}

{{/*
What a model's settings leave out: engine.config.EngineOptions' defaults (the keys of its
YAML). tests/helm/test_chart_vllm_args.py holds this list equal to the Python declaration.
*/}}
{{- define "llm-gateway.engineOptionDefaults" -}}
task: generate
dtype: float32
max_model_len: 2048
max_num_seqs: 64
enforce_eager: true
quantization: null
gpu_memory_utilization: 0.9
tensor_parallel_size: 1
scheduling_policy: fcfs
speculation:
  method: none
  num_speculative_tokens: 4
  prompt_lookup_min: 2
  prompt_lookup_max: 4
  draft_path: null
  max_batch_size: null
  draft_under_load: skip
  acceptance_floor: 0.0
  acceptance_window_s: 300.0
cpu:
  threads_bind: auto
  reserved_cpus: 0
  kv_cache_gib: 2
{{- end -}}

{{/*
A model's engine options: its settings over the defaults, key by key (a false or null given
in the settings wins; sprig's merge would drop it). dict "model" NAME "spec" SPEC, as YAML.
*/}}
{{- define "llm-gateway.engineOptions" -}}
{{- $given := fromYaml (include "llm-gateway.modelSettings" .) -}}
{{- $options := dict -}}
{{- range $key, $default := fromYaml (include "llm-gateway.engineOptionDefaults" .) -}}
{{- $value := ternary (index $given $key) $default (hasKey $given $key) -}}
{{- if kindIs "map" $default -}}
{{- $nested := dict -}}
{{- $inner := $value | default dict -}}
{{- range $k, $d := $default -}}
{{- $_ := set $nested $k (ternary (index $inner $k) $d (hasKey $inner $k)) -}}
{{- end -}}
{{- $value = $nested -}}
{{- end -}}
{{- $_ := set $options $key $value -}}
{{- end -}}
{{- toYaml $options -}}
{{- end -}}

{{/*
The `vllm serve` flags of one model's engine, from its settings: the chart's rendering of
engine.vllm_args.vllm_serve_args (tests/helm/test_chart_vllm_args.py parses both with vLLM's
own parser and holds them equal). dict "model" NAME "spec" SPEC, as a YAML list.
*/}}
{{- define "llm-gateway.vllmArgs" -}}
{{- $o := fromYaml (include "llm-gateway.engineOptions" .) -}}
{{- $sp := $o.speculation -}}
- --model
- {{ include "llm-gateway.modelDir" . | quote }}
- --served-model-name
- {{ .model | quote }}
- --dtype
- {{ $o.dtype | quote }}
- --max-model-len
- {{ int $o.max_model_len | quote }}
- --max-num-seqs
- {{ int $o.max_num_seqs | quote }}
{{- if $o.enforce_eager }}
- --enforce-eager
{{- end }}
{{- with $o.quantization }}
- --quantization
- {{ . | quote }}
{{- end }}
- --gpu-memory-utilization
- {{ $o.gpu_memory_utilization | quote }}
- --tensor-parallel-size
- {{ int $o.tensor_parallel_size | quote }}
- --scheduling-policy
- {{ $o.scheduling_policy | quote }}
{{- if ne $sp.method "none" }}
{{- $config := dict "method" $sp.method "num_speculative_tokens" (int $sp.num_speculative_tokens) }}
{{- if eq $sp.method "ngram" }}
{{- $_ := set $config "prompt_lookup_min" (int $sp.prompt_lookup_min) }}
{{- $_ := set $config "prompt_lookup_max" (int $sp.prompt_lookup_max) }}
{{- else }}
{{- $draft := required (printf "model %s: speculation method %s needs draft_path" .model $sp.method) $sp.draft_path }}
{{- $_ := set $config "model" (ternary $draft (printf "/models/%s" $draft) (hasPrefix "/" $draft)) }}
{{- end }}
{{- if $sp.max_batch_size }}
{{- $limit := int $sp.max_batch_size }}
{{- $_ := set $config "num_speculative_tokens_per_batch_size" (list (list 1 $limit (int $sp.num_speculative_tokens)) (list (add1 $limit) (add1 $limit) 0)) }}
{{- end }}
- --speculative-config
- {{ toJson $config | quote }}
{{- if and $sp.max_batch_size (eq $sp.draft_under_load "skip") (ne $sp.method "ngram") }}
- --additional-config
- {{ toJson (dict "llm_gateway" (dict "draft_under_load" "skip")) | quote }}
{{- end }}
{{- end }}
- --seed
- "0"
- --runner
- {{ ternary "pooling" "generate" (eq $o.task "embed") | quote }}
{{- if eq $o.task "generate" }}
- --enable-prefix-caching
{{- end }}
- --per-request-spec-decode-metrics
- {{ ternary "none" "summary" (eq $sp.method "none") | quote }}
- --enable-scale-out
- --enable-prompt-tokens-details
{{- $given := fromYaml (include "llm-gateway.modelSettings" .) }}
{{- if and (eq $o.task "generate") (gt (int ($given.max_loras | default 0)) 0) }}
- --enable-lora
- --max-loras
- {{ int $given.max_loras | quote }}
- --max-lora-rank
- {{ int ($given.max_lora_rank | default 16) | quote }}
{{- end }}
{{- end -}}

{{/*
The engine container: vLLM's own server (`vllm serve` in the official image) with the model's
flags, the bind address (loopback: the pod's gate sidecar is its one door) and drain, then
engine.extraArgs (a flag the settings own is refused). dict "model" NAME "spec" SPEC "e" ENGINE-VALUES
*/}}
{{- define "llm-gateway.engineCommand" -}}
{{- $args := fromYamlArray (include "llm-gateway.vllmArgs" .) -}}
{{- range .e.extraArgs -}}
{{- if and (hasPrefix "--" .) (has (regexReplaceAll "=.*$" . "") $args) -}}
{{- fail (printf "model %s: engine.extraArgs sets %s, which the model's settings own" $.model .) -}}
{{- end -}}
{{- if has (regexReplaceAll "=.*$" . "") (list "--host" "--port" "--uds" "--api-key") -}}
{{- fail (printf "model %s: engine.extraArgs sets %s: vLLM listens on loopback behind the pod's gate (engine.port, engine.gate.enginePort) with the chart's engine API key" $.model .) -}}
{{- end -}}
{{- end -}}
command:
  {{- toYaml .e.command | nindent 2 }}
args:
  {{- toYaml $args | nindent 2 }}
  - --host
  - 127.0.0.1
  - --port
  - {{ .e.gate.enginePort | quote }}
  - --shutdown-timeout
  - {{ .e.drainSeconds | quote }}
  {{- range .e.extraArgs }}
  - {{ . | quote }}
  {{- end }}
{{- end -}}
