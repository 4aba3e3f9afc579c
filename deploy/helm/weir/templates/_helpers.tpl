{{/*
Chart name, truncated to 63 characters (a DNS label).
*/}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name when it already contains
the chart name. Kept to 40 characters so "<fullname>-executor-headless" and
pod names with ordinals stay valid DNS labels.
*/}}
{{- define "weir.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value: name-version.
*/}}
{{- define "weir.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "weir.labels" -}}
helm.sh/chart: {{ include "weir.chart" . }}
{{ include "weir.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: weir
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels (stable across upgrades).
*/}}
{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Driver names and labels. */}}
{{- define "weir.driver.fullname" -}}
{{- printf "%s-driver" (include "weir.fullname" .) }}
{{- end }}
{{- define "weir.driver.headless" -}}
{{- printf "%s-driver-headless" (include "weir.fullname" .) }}
{{- end }}
{{- define "weir.driver.selectorLabels" -}}
{{ include "weir.selectorLabels" . }}
app.kubernetes.io/component: driver
{{- end }}
{{- define "weir.driver.labels" -}}
{{ include "weir.labels" . }}
app.kubernetes.io/component: driver
{{- end }}

{{/* Executor names and labels. */}}
{{- define "weir.executor.fullname" -}}
{{- printf "%s-executor" (include "weir.fullname" .) }}
{{- end }}
{{- define "weir.executor.headless" -}}
{{- printf "%s-executor-headless" (include "weir.fullname" .) }}
{{- end }}
{{- define "weir.executor.selectorLabels" -}}
{{ include "weir.selectorLabels" . }}
app.kubernetes.io/component: executor
{{- end }}
{{- define "weir.executor.labels" -}}
{{ include "weir.labels" . }}
app.kubernetes.io/component: executor
{{- end }}

{{/*
Stable DNS suffix of the driver pods: <headless>.<namespace>.svc.<domain>.
*/}}
{{- define "weir.driver.dnsSuffix" -}}
{{- printf "%s.%s.svc.%s" (include "weir.driver.headless" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}
{{- define "weir.executor.dnsSuffix" -}}
{{- printf "%s.%s.svc.%s" (include "weir.executor.headless" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/*
Address of the driver with pod ordinal i: call with (list $ i).
*/}}
{{- define "weir.driver.address" -}}
{{- $root := index . 0 }}
{{- $i := index . 1 }}
{{- printf "%s-%d.%s:%d" (include "weir.driver.fullname" $root) (int $i) (include "weir.driver.dnsSuffix" $root) (int $root.Values.driver.port) }}
{{- end }}

{{/*
Every driver address, comma-separated (for WEIR_DRIVERS).
*/}}
{{- define "weir.driver.addresses" -}}
{{- $root := . }}
{{- $out := list }}
{{- range $i := until (int .Values.driver.replicas) }}
{{- $out = append $out (include "weir.driver.address" (list $root $i)) }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/*
Raft quorum of the driver group: replicas/2 + 1.
*/}}
{{- define "weir.driver.quorum" -}}
{{- add (div (int .Values.driver.replicas) 2) 1 }}
{{- end }}

{{/*
Executor state root: explicit value, else HDFS, else a local directory.
*/}}
{{- define "weir.executor.stateRoot" -}}
{{- if .Values.executor.stateRoot }}
{{- .Values.executor.stateRoot }}
{{- else if .Values.hdfs.namenodeUrl }}
{{- printf "%s%s" (trimSuffix "/" .Values.hdfs.namenodeUrl) .Values.hdfs.statePath }}
{{- else }}
{{- printf "%s/state" (trimSuffix "/" .Values.executor.persistence.mountPath) }}
{{- end }}
{{- end }}

{{/*
Whether the executors need the Hadoop client ConfigMap.
*/}}
{{- define "weir.hadoopConf.enabled" -}}
{{- if or .Values.kerberos.enabled (gt (len .Values.hdfs.config) 0) }}true{{- end }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "weir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "weir.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference.
*/}}
{{- define "weir.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Number of executor ordinals with a certificate: tls.executorSecrets, at
least executor.replicas.
*/}}
{{- define "weir.tls.executorOrdinals" -}}
{{- max (int .Values.executor.replicas) (int .Values.tls.executorSecrets) }}
{{- end }}

{{/*
Name of the TLS Secret of a pod: "<pod name>-tls".
*/}}
{{- define "weir.tls.secretName" -}}
{{- printf "%s-tls" . }}
{{- end }}

{{/*
DNS names on the certificate of the driver with pod ordinal i (call with
(list $ i)): its stable pod name, the client Service, tls.driverExtraDnsNames.
*/}}
{{- define "weir.driver.dnsNames" -}}
{{- $root := index . 0 }}
{{- $i := index . 1 }}
{{- $svc := include "weir.driver.fullname" $root }}
{{- $ns := $root.Release.Namespace }}
- {{ printf "%s-%d.%s" $svc (int $i) (include "weir.driver.dnsSuffix" $root) }}
- {{ $svc }}
- {{ printf "%s.%s" $svc $ns }}
- {{ printf "%s.%s.svc" $svc $ns }}
- {{ printf "%s.%s.svc.%s" $svc $ns $root.Values.clusterDomain }}
{{- range $root.Values.tls.driverExtraDnsNames }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Secret holding the drivers' tokens file.
*/}}
{{- define "weir.tokens.secretName" -}}
{{- default (printf "%s-tokens" (include "weir.fullname" .)) .Values.tokens.existingSecret }}
{{- end }}
{{- define "weir.tokens.key" -}}
{{- if .Values.tokens.existingSecret }}{{ .Values.tokens.key }}{{ else }}tokens.yaml{{ end }}
{{- end }}

{{/*
Values that cannot work; fails the render with a message.
*/}}
{{- define "weir.validate" -}}
{{- if lt (int .Values.driver.replicas) 1 }}
{{- fail "driver.replicas must be at least 1" }}
{{- end }}
{{- if le (int .Values.driver.raft.electionTicks) (int .Values.driver.raft.heartbeatTicks) }}
{{- fail "driver.raft.electionTicks must be greater than driver.raft.heartbeatTicks" }}
{{- end }}
{{- if lt (int .Values.executor.slots) 1 }}
{{- fail "executor.slots must be at least 1" }}
{{- end }}
{{- if not (has .Values.logFormat (list "human" "json")) }}
{{- fail "logFormat must be human or json" }}
{{- end }}
{{- if not (has .Values.executor.probeType (list "tcp" "grpc")) }}
{{- fail "executor.probeType must be tcp or grpc" }}
{{- end }}
{{- if not (has .Values.driver.podAntiAffinity (list "soft" "hard" "none")) }}
{{- fail "driver.podAntiAffinity must be soft, hard or none" }}
{{- end }}
{{- if and .Values.kerberos.enabled (or (not .Values.kerberos.secretName) (not .Values.kerberos.principal)) }}
{{- fail "kerberos.enabled needs kerberos.secretName and kerberos.principal" }}
{{- end }}
{{- if and (eq .Values.tls.certManager.issuerRef.group "cert-manager.io") (not (has .Values.tls.certManager.issuerRef.kind (list "Issuer" "ClusterIssuer"))) }}
{{- fail "tls.certManager.issuerRef.kind must be Issuer or ClusterIssuer (or set issuerRef.group for an external issuer)" }}
{{- end }}
{{- if lt (int .Values.tls.executorSecrets) 0 }}
{{- fail "tls.executorSecrets must be 0 or more" }}
{{- end }}
{{- if and .Values.tokens.existingSecret .Values.tokens.entries }}
{{- fail "tokens: give existingSecret or entries, not both" }}
{{- end }}
{{- $names := list }}
{{- range $i, $t := .Values.tokens.entries }}
{{- if not (regexMatch "^[A-Za-z0-9._@-]{1,128}$" (toString $t.name)) }}
{{- fail (printf "tokens.entries[%d].name must be 1-128 letters, digits, '-', '_', '.' or '@'" $i) }}
{{- end }}
{{- if has $t.name $names }}
{{- fail (printf "tokens.entries[%d].name %s appears twice" $i $t.name) }}
{{- end }}
{{- $names = append $names $t.name }}
{{- if not (has (toString $t.role) (list "viewer" "operator" "admin")) }}
{{- fail (printf "tokens.entries[%d].role must be viewer, operator or admin" $i) }}
{{- end }}
{{- if and $t.sha256 (not (regexMatch "^[0-9a-fA-F]{64}$" (toString $t.sha256))) }}
{{- fail (printf "tokens.entries[%d].sha256 must be 64 hex digits (printf %%s TOKEN | sha256sum)" $i) }}
{{- end }}
{{- range $k, $_ := $t }}
{{- if not (has $k (list "name" "role" "sha256")) }}
{{- fail (printf "tokens.entries[%d] has unknown key %s (name, role, sha256)" $i $k) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
