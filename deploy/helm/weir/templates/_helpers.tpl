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
"true" when the ServiceMonitors are rendered: monitoring.serviceMonitor.enabled
is true, or auto and the cluster (or `helm template --api-versions`) has the
ServiceMonitor kind.
*/}}
{{- define "weir.serviceMonitor.enabled" -}}
{{- $v := toString .Values.monitoring.serviceMonitor.enabled }}
{{- if eq $v "true" }}true
{{- else if and (eq $v "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") }}true
{{- end }}
{{- end }}

{{/*
How Prometheus gets the viewer role on the HTTP port: "token" (a bearer
token from monitoring.serviceMonitor.bearerToken.secretName),
"certificate" (a client certificate), or "" without TLS.
*/}}
{{- define "weir.prometheus.auth" -}}
{{- if .Values.tls.enabled }}
{{- if .Values.monitoring.serviceMonitor.bearerToken.secretName }}token{{ else }}certificate{{ end }}
{{- end }}
{{- end }}

{{/*
Secret of Prometheus's client certificate (tls.crt, tls.key).
*/}}
{{- define "weir.prometheus.certSecret" -}}
{{- $c := .Values.monitoring.serviceMonitor.clientCertificate }}
{{- default (printf "%s-client-%s-tls" (include "weir.fullname" .) $c.name) $c.secretName }}
{{- end }}

{{/*
"true" when the chart's cert-manager issues Prometheus's client certificate.
*/}}
{{- define "weir.prometheus.issueCert" -}}
{{- if and (include "weir.serviceMonitor.enabled" .) (eq (include "weir.prometheus.auth" .) "certificate") .Values.tls.certManager.enabled (not .Values.monitoring.serviceMonitor.clientCertificate.secretName) }}true{{ end }}
{{- end }}

{{/*
"true" when the tokens file the chart renders gets the entry
{name: <clientCertificate.name>, role: viewer} for Prometheus: the
ServiceMonitors use the client certificate and no entry has that name.
*/}}
{{- define "weir.prometheus.addViewer" -}}
{{- $name := .Values.monitoring.serviceMonitor.clientCertificate.name }}
{{- $named := false }}
{{- range .Values.tokens.entries }}
{{- if eq (toString .name) $name }}{{ $named = true }}{{ end }}
{{- end }}
{{- if and (include "weir.serviceMonitor.enabled" .) (eq (include "weir.prometheus.auth" .) "certificate") (not .Values.tokens.existingSecret) (not $named) }}true{{ end }}
{{- end }}

{{/*
Values of older charts that no longer exist: fails the render naming the
replacement. `helm upgrade --reuse-values` from such a chart brings its
defaults along; --reset-then-reuse-values takes the new chart's defaults
and keeps what was set.
*/}}
{{- define "weir.removedValues" -}}
{{- $removed := list }}
{{- if hasKey .Values.executor "probeType" }}
{{- $removed = append $removed "executor.probeType (probes are HTTP GETs on monitoring.http.port)" }}
{{- end }}
{{- if hasKey .Values.monitoring.serviceMonitor "port" }}
{{- $removed = append $removed "monitoring.serviceMonitor.port (now monitoring.http.port)" }}
{{- end }}
{{- if hasKey .Values.monitoring.serviceMonitor "path" }}
{{- $removed = append $removed "monitoring.serviceMonitor.path (always /metrics)" }}
{{- end }}
{{- if hasKey .Values.networkPolicy "metricsSources" }}
{{- $removed = append $removed "networkPolicy.metricsSources (now networkPolicy.httpSources)" }}
{{- end }}
{{- if $removed }}
{{- fail (printf "values removed in chart 0.3.0: %s. Unset them; after `helm upgrade --reuse-values` from an older chart, use --reset-then-reuse-values instead" (join "; " $removed)) }}
{{- end }}
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
{{- include "weir.removedValues" . }}
{{- $http := .Values.monitoring.http.port }}
{{- if not (and (regexMatch "^[0-9]{1,5}$" (toString $http)) (ge (int $http) 1) (le (int $http) 65535)) }}
{{- fail "monitoring.http.port must be a port number, 1-65535" }}
{{- end }}
{{- if or (eq (int $http) (int .Values.driver.port)) (eq (int $http) (int .Values.executor.port)) }}
{{- fail "monitoring.http.port must differ from driver.port and executor.port" }}
{{- end }}
{{- if not (has (toString .Values.monitoring.serviceMonitor.enabled) (list "true" "false" "auto")) }}
{{- fail "monitoring.serviceMonitor.enabled must be true, false or auto" }}
{{- end }}
{{- $sm := .Values.monitoring.serviceMonitor }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" (toString $sm.clientCertificate.name)) }}
{{- fail "monitoring.serviceMonitor.clientCertificate.name must be a DNS label (lower-case letters, digits, '-')" }}
{{- end }}
{{- if and $sm.bearerToken.secretName $sm.clientCertificate.secretName }}
{{- fail "monitoring.serviceMonitor: give bearerToken.secretName or clientCertificate.secretName, not both" }}
{{- end }}
{{- if and $sm.bearerToken.secretName (not $sm.bearerToken.key) }}
{{- fail "monitoring.serviceMonitor.bearerToken.key must name the token's key in bearerToken.secretName" }}
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
