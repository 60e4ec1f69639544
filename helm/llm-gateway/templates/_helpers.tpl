{{/* Names, labels and the merged per-model engine values. */}}

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

{{- define "llm-gateway.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "llm-gateway.secretName" -}}
{{- default (printf "%s-secrets" (include "llm-gateway.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Engine workload name for one model: dict "root" $ "model" NAME. */}}
{{- define "llm-gateway.engineName" -}}
{{- printf "%s-engine-%s" (include "llm-gateway.fullname" .root) .model | trunc 52 | trimSuffix "-" -}}
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

{{/* The settings environment shared by gateway and engine containers. */}}
{{- define "llm-gateway.settingsEnv" -}}
- name: LLMGW_CONFIG_DIR
  value: /etc/llm-gateway
- name: LLMGW_PROFILE
  value: kubernetes
- name: LLMGW_MODEL_CACHE
  value: /models
{{- end -}}

{{- define "llm-gateway.secretEnv" -}}
{{- $s := .Values.secrets -}}
- name: {{ $s.env.adminKey }}
  valueFrom:
    secretKeyRef: {name: {{ include "llm-gateway.secretName" . }}, key: {{ $s.keys.adminKey }}}
- name: {{ $s.env.databaseUrl }}
  valueFrom:
    secretKeyRef: {name: {{ include "llm-gateway.secretName" . }}, key: {{ $s.keys.databaseUrl }}, optional: true}
- name: {{ $s.env.redisUrl }}
  valueFrom:
    secretKeyRef: {name: {{ include "llm-gateway.secretName" . }}, key: {{ $s.keys.redisUrl }}, optional: true}
{{- end -}}

{{/* Init container that fetches a model: dict "root" $ "model" NAME "spec" SPEC "tokenizerOnly" BOOL. */}}
{{- define "llm-gateway.modelInit" -}}
{{- $dl := .spec.download | default dict -}}
- name: fetch-{{ .model | trunc 50 | trimSuffix "-" }}
  image: {{ .image }}
  imagePullPolicy: {{ .pullPolicy }}
  env:
    {{- include "llm-gateway.settingsEnv" .root | nindent 4 }}
    - name: HF_HUB_OFFLINE
      value: {{ ternary "0" "1" (not (empty $dl.repo)) | quote }}
    {{- if $dl.repo }}
    {{- if $dl.hfTokenSecret }}
    - name: HF_TOKEN
      valueFrom:
        secretKeyRef: {name: {{ $dl.hfTokenSecret }}, key: token}
    {{- end }}
    {{- end }}
  {{- if $dl.repo }}
  command:
    - python
    - -c
    - |
      import sys
      from huggingface_hub import snapshot_download
      patterns = ["*.json", "*.jinja", "tokenizer*", "*.model", "*.txt"] if sys.argv[4] == "true" else None
      snapshot_download(repo_id=sys.argv[1], revision=sys.argv[2], local_dir=sys.argv[3], allow_patterns=patterns)
    - {{ $dl.repo | quote }}
    - {{ $dl.revision | default "main" | quote }}
    - {{ printf "/models/%s" .model | quote }}
    - {{ .tokenizerOnly | quote }}
  {{- else }}
  command: ["llm-gateway", "models", "prepare", "--model", {{ .model | quote }}]
  {{- end }}
  volumeMounts:
    - {name: config, mountPath: /etc/llm-gateway, readOnly: true}
    - {name: models, mountPath: /models}
{{- end -}}

{{- define "llm-gateway.configVolume" -}}
- name: config
  configMap:
    name: {{ include "llm-gateway.fullname" . }}-config
    items:
      - {key: gateway.yaml, path: gateway.yaml}
      - {key: models.yaml, path: models.yaml}
      - {key: prices.yaml, path: prices.yaml}
      - {key: profile.yaml, path: profiles/kubernetes.yaml}
{{- end -}}
