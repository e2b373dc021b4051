{{/*
Names shared by the templates. For the release "gitops-agent" (the documented one) every name is
exactly manifests/agent's, so the two install paths make the same objects.
*/}}

{{/* The chart's name, for the app.kubernetes.io/name label. */}}
{{- define "gitops-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' base name: the release's, with the chart's name unless it already holds it. */}}
{{- define "gitops-agent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The namespace of every namespaced object: the chart's own (namespace.create) or the release's.
Also where the checks that stop a render early live, since every template includes it.
*/}}
{{- define "gitops-agent.namespace" -}}
{{- include "gitops-agent.validate" . }}
{{- if .Values.namespace.create }}
{{- .Values.namespace.name }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* The Secret the pod reads its token from. */}}
{{- define "gitops-agent.tokenSecretName" -}}
{{- default (printf "%s-token" (include "gitops-agent.fullname" .)) .Values.config.secretName }}
{{- end }}

{{/* The ConfigMap the pod reads the server's CA certificate from. */}}
{{- define "gitops-agent.caConfigMapName" -}}
{{- default (printf "%s-ca" (include "gitops-agent.fullname" .)) .Values.config.caConfigMapName }}
{{- end }}

{{/*
The server URL ConfigMap's name with the suffix kustomize's configMapGenerator adds:
the first 10 hex digits of the SHA-256 of {"data":…,"kind":"ConfigMap","name":""} (kustomize's
hasher looks the name up by a path it never finds, so the name is always empty), with 0 1 3 a e
spelt g h k m t. A new URL is then a new ConfigMap name, which rolls the pods as with kustomize.
*/}}
{{- define "gitops-agent.configName" -}}
{{- $hash := dict "kind" "ConfigMap" "name" "" "data" (dict "server-url" .Values.config.serverUrl) | toJson | sha256sum | trunc 10 }}
{{- $hash = $hash | replace "0" "g" | replace "1" "h" | replace "3" "k" | replace "a" "m" | replace "e" "t" }}
{{- printf "%s-config-%s" (include "gitops-agent.fullname" .) $hash }}
{{- end }}

{{/*
Value checks whose messages say what to change. None prints config.token or config.serverUrl
(which might hold credentials): a render's errors end up in terminals and CI logs.
*/}}
{{- define "gitops-agent.validate" -}}
{{- $v := .Values }}
{{- if and $v.namespace.create (ne .Release.Namespace "default") }}
{{- fail (printf "namespace.create=true (the default) makes the namespace %q and puts everything in it, so --namespace %s would hold only Helm's release record (and cannot be %q itself: Helm writes that record before it creates anything). Install without --namespace (or with --namespace default); or, to put everything in %s: --namespace %s --create-namespace --set namespace.create=false" $v.namespace.name .Release.Namespace $v.namespace.name .Release.Namespace .Release.Namespace) }}
{{- end }}
{{- if not (regexMatch "^wss?://[^/@\\s]+(/\\S*)?$" $v.config.serverUrl) }}
{{- fail "config.serverUrl must be the server's agent endpoint, wss://HOST[:PORT]/api/v1/agent/connect, with no credentials in it (not echoed here in case it holds some)" }}
{{- end }}
{{- if and $v.config.token $v.config.secretName }}
{{- fail "config.token and config.secretName are both set: give the token itself (the chart creates its Secret) or the name of a Secret you made, not both" }}
{{- end }}
{{- if and $v.config.token (not (regexMatch "^gitops_agent_[A-Za-z0-9_-]{71}$" (trim $v.config.token))) }}
{{- fail "config.token is not an agent token: expected what `gitops-server agent create` printed, gitops_agent_ followed by 71 characters (pass the file: --set-file config.token=agent1.token)" }}
{{- end }}
{{- if and $v.config.caCert $v.config.caConfigMapName }}
{{- fail "config.caCert and config.caConfigMapName are both set: give the PEM (the chart creates its ConfigMap) or the name of a ConfigMap you made, not both" }}
{{- end }}
{{- if and $v.config.caCert (not (contains "-----BEGIN CERTIFICATE-----" $v.config.caCert)) }}
{{- fail "config.caCert holds no PEM certificate (-----BEGIN CERTIFICATE-----): pass the file, --set-file config.caCert=server-ca.crt" }}
{{- end }}
{{- if not (has $v.rbac.mode (list "least-privilege" "cluster-admin")) }}
{{- fail (printf "rbac.mode %q: must be least-privilege or cluster-admin (or rbac.create=false to grant the agent yourself)" $v.rbac.mode) }}
{{- end }}
{{- if and (gt (int $v.replicas) 1) (not $v.leaderElection.enabled) }}
{{- fail (printf "replicas=%d with leaderElection.enabled=false: replicas would apply at the same time; enable leader election or run one replica" (int $v.replicas)) }}
{{- end }}
{{- end }}

{{/* The pod's labels, also the Deployment's selector. */}}
{{- define "gitops-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gitops-agent.name" . }}
{{- end }}
