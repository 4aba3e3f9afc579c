#!/usr/bin/env bash
# Validates the Weir Helm chart and deploy/Dockerfile offline:
#
#   deploy/helm/check.sh
#
# 1. installs pinned tools into a cache (first run only): helm, built from
#    source with `go install` (the Go module proxy is the only source
#    needed), and kubernetes-validate (ships the Kubernetes JSON schemas) and
#    promql-parser (parses the dashboard's queries) in a Python venv;
# 2. `helm lint --strict` and `helm template` for the default values and
#    every file in deploy/helm/weir/ci/ (plus --set variants), some with the
#    Prometheus Operator's ServiceMonitor kind announced (--api-versions);
# 3. validates every rendered manifest against the Kubernetes $K8S_VERSION
#    schemas (strict: unknown fields fail; the ServiceMonitor and cert-manager
#    CRDs are skipped), and runs deploy/helm/check_chart.py: peer list, ports,
#    the HTTP port and its probes, PDB quorum, flags and settings-file keys
#    against the Rust sources, TLS flags and tokens or --insecure as each
#    case expects, per-pod certificate Secrets and the identities
#    cert-manager Certificates name, the tokens file, the NetworkPolicies,
#    the ServiceMonitors (present exactly when expected, every pod scraped
#    once with the expected credentials), the Grafana dashboard
#    (deploy/grafana/weir.json) and the Dockerfile against the Cargo
#    manifests; a self-test breaks renderings and the dashboard in known
#    ways and fails unless each breakage is caught;
# 4. if weir-driver/weir-executor are built (target/debug or
#    $CARGO_TARGET_DIR) and know --http-listen, feeds the rendered settings
#    files with the chart's TLS or --insecure flags, --tokens and
#    --http-listen to the real binaries to prove they parse.
#
# Tools go to ${WEIR_TOOLS_DIR:-$HOME/.cache/weir/tools}; reruns reuse them.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

HELM_VERSION=v3.16.4
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMQL_PARSER_VERSION=0.11.0
# Kubernetes version the manifests are validated against (and that
# `helm template` renders for). Chart.yaml requires >= 1.27.
K8S_VERSION=1.31.0

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
CHART=deploy/helm/weir
TOOLS=${WEIR_TOOLS_DIR:-$HOME/.cache/weir/tools}
mkdir -p "$TOOLS/bin"
say() { printf '  %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }

# --- helm -------------------------------------------------------------------
HELM=$TOOLS/bin/helm
helm_ok() { [ -x "$HELM" ] && [ "$(cat "$TOOLS/bin/helm.version" 2>/dev/null)" = "$HELM_VERSION" ]; }
if ! helm_ok; then
    command -v go >/dev/null 2>&1 || { [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"; }
    command -v go >/dev/null 2>&1 || die "helm $HELM_VERSION is not in $TOOLS/bin and Go is not installed to build it (helm $HELM_VERSION needs Go 1.22+; Debian 12's golang-go is 1.19, use bookworm-backports' golang-1.22 or the Go toolchain)"
    say "building helm $HELM_VERSION with go install (a few minutes on 2 cores, once)"
    t=$(now)
    # The version string is set the way helm's Makefile sets it.
    GOBIN="$TOOLS/bin" CGO_ENABLED=0 go install \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
        || die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
    echo "$HELM_VERSION" >"$TOOLS/bin/helm.version"
    say "helm built in $(( $(now) - t )) s"
fi

# --- kubernetes-validate and promql-parser -------------------------------------
VENV=$TOOLS/chart-checks-kv$KUBERNETES_VALIDATE_VERSION-promql$PROMQL_PARSER_VERSION
PY=$VENV/bin/python
if ! "$PY" -c 'import kubernetes_validate, yaml, promql_parser' >/dev/null 2>&1; then
    say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and promql-parser $PROMQL_PARSER_VERSION into $VENV"
    t=$(now)
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            say "installing python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
                || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
        fi
        rm -rf "$VENV"
        python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "promql-parser==$PROMQL_PARSER_VERSION" \
        || die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION promql-parser==$PROMQL_PARSER_VERSION failed"
    say "kubernetes-validate and promql-parser installed in $(( $(now) - t )) s"
fi

# --- checks -----------------------------------------------------------------
t=$(now)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

say "Dockerfile: stages, binaries, user, ports"
"$PY" deploy/helm/check_chart.py dockerfile "$REPO" "$CHART/values.yaml" \
    || die "deploy/Dockerfile failed its checks (above)"

say "Grafana dashboard: deploy/grafana/weir.json and the chart's copy (and its self-test)"
"$PY" deploy/helm/check_chart.py dashboard "$REPO" \
    || die "the Grafana dashboard failed its checks (above)"

# The ServiceMonitor kind, as a cluster with the Prometheus Operator's CRDs
# announces it (`helm lint` takes no --api-versions: only the template does).
CRD="--api-versions monitoring.coreos.com/v1/ServiceMonitor"
# name | helm values | template-only arguments | expected drivers | expected
# executors | tls or insecure | expected ServiceMonitors (none, plain,
# certificate, token)
cases=(
    "default|||3|2|tls|none"
    "default-crd||$CRD|3|2|tls|certificate"
    "crd-disabled|--set monitoring.serviceMonitor.enabled=false|$CRD|3|2|tls|none"
    "dev|-f $CHART/ci/dev-values.yaml||1|1|insecure|none"
    "ha-tls|-f $CHART/ci/ha-tls-values.yaml||5|10|tls|token"
    "tls-secrets|-f $CHART/ci/tls-secrets-values.yaml|$CRD|3|3|tls|certificate"
    "insecure-monitor|--set tls.enabled=false --set monitoring.serviceMonitor.enabled=true --set executor.replicas=4 --set monitoring.http.port=9404||3|4|insecure|plain"
)
for case in "${cases[@]}"; do
    IFS='|' read -r name args template_args drivers executors mode monitor <<<"$case"
    say "$name: helm lint, helm template, validate against Kubernetes $K8S_VERSION, chart checks"
    # shellcheck disable=SC2086
    "$HELM" lint --strict --quiet --kube-version "$K8S_VERSION" $args "$CHART" >"$OUT/$name.lint" 2>&1 \
        || { cat "$OUT/$name.lint" >&2; die "helm lint failed for $name"; }
    # shellcheck disable=SC2086
    "$HELM" template weir "$CHART" --namespace weir --kube-version "$K8S_VERSION" $args $template_args \
        >"$OUT/$name.yaml" 2>"$OUT/$name.err" \
        || { cat "$OUT/$name.err" >&2; die "helm template failed for $name"; }
    "$PY" deploy/helm/check_chart.py rendered "$REPO" "$OUT/$name.yaml" "$drivers" "$executors" "$K8S_VERSION" \
        "$mode" "$monitor" \
        || die "the $name rendering failed its checks (above); rendered with: helm template weir $CHART $args $template_args"
done

say "values the chart must refuse"
for bad in "--set driver.replicas=0" "--set driver.raft.electionTicks=2" "--set kerberos.enabled=true" \
           "--set executor.probeType=http" "--set logFormat=text" \
           "--set monitoring.serviceMonitor.port=9090" "--set networkPolicy.metricsSources[0].podSelector.matchLabels.a=b" \
           "--set monitoring.http.port=7070" "--set monitoring.http.port=0" \
           "--set monitoring.serviceMonitor.enabled=yes" \
           "--set monitoring.serviceMonitor.clientCertificate.name=Prom_1" \
           "--set monitoring.serviceMonitor.bearerToken.secretName=t --set monitoring.serviceMonitor.clientCertificate.secretName=c" \
           "--set tls.certManager.issuerRef.kind=Vault" "--set tls.executorSecrets=-1" \
           "--set tokens.existingSecret=x --set tokens.entries[0].name=a,tokens.entries[0].role=admin" \
           "--set tokens.entries[0].name=a,tokens.entries[0].role=root" \
           "--set tokens.entries[0].name=a/b,tokens.entries[0].role=admin" \
           "--set tokens.entries[0].name=a,tokens.entries[0].role=admin,tokens.entries[0].sha256=abc" \
           "--set tokens.entries[0].name=a,tokens.entries[0].role=admin,tokens.entries[0].token=x" \
           "--set tokens.entries[0].name=a,tokens.entries[0].role=admin,tokens.entries[1].name=a,tokens.entries[1].role=viewer"; do
    # shellcheck disable=SC2086
    if "$HELM" template weir "$CHART" --kube-version "$K8S_VERSION" $bad >/dev/null 2>&1; then
        die "helm template accepted invalid values: $bad"
    fi
done

say "self-test: broken manifests and dashboards must be caught"
"$PY" deploy/helm/check_chart.py selftest "$REPO" "$OUT/default.yaml" 3 2 "$K8S_VERSION" tls none >&2 \
    || die "the chart checks missed a broken manifest (above)"
"$PY" deploy/helm/check_chart.py selftest "$REPO" "$OUT/default-crd.yaml" 3 2 "$K8S_VERSION" tls certificate >&2 \
    || die "the chart checks missed a broken manifest (above)"
"$PY" deploy/helm/check_chart.py selftest "$REPO" "$OUT/insecure-monitor.yaml" 3 4 "$K8S_VERSION" insecure plain >&2 \
    || die "the chart checks missed a broken manifest (above)"

# --- rendered settings files against the real binaries ------------------------
target=${CARGO_TARGET_DIR:-$REPO/target}
driver_bin="" executor_bin=""
for profile in debug release; do
    [ -x "$target/$profile/weir-driver" ] && driver_bin=${driver_bin:-$target/$profile/weir-driver}
    [ -x "$target/$profile/weir-executor" ] && executor_bin=${executor_bin:-$target/$profile/weir-executor}
done
knows() { case $("$1" --help 2>&1 || true) in *"$2"*) return 0 ;; *) return 1 ;; esac; }
if [ -n "$driver_bin" ] && [ -n "$executor_bin" ] \
    && ! { knows "$driver_bin" --http-listen && knows "$executor_bin" --http-listen && knows "$executor_bin" --tokens; }; then
    say "skipping the binary parse check: $driver_bin and $executor_bin predate the HTTP port (no --http-listen, or an executor without --tokens); rebuild them (cargo build --bins)"
elif [ -n "$driver_bin" ] && [ -n "$executor_bin" ]; then
    say "rendered driver.yaml/executor.yaml and TLS/--insecure, --tokens and --http-listen flags parsed by $driver_bin and $executor_bin"
    for name in default dev ha-tls tls-secrets; do
        "$PY" deploy/helm/check_chart.py settings "$OUT/$name.yaml" "$OUT/$name" \
            || die "could not extract the settings of $name"
        mapfile -t dflags <"$OUT/$name.driver.flags"
        mapfile -t eflags <"$OUT/$name.executor.flags"
        # Each binary reads the file and the chart's security flags (the TLS
        # files need not exist yet), then stops at a setting made invalid on
        # purpose: the error must name that setting, not the file or TLS.
        msg=$("$driver_bin" --config "$OUT/$name.driver.yaml" --id 1 --data-dir "$OUT/d" "${dflags[@]}" \
              --election-ticks 1 --heartbeat-ticks 1 2>&1 || true)
        case $msg in
            *"--election-ticks"*) ;;
            *) die "weir-driver rejected the rendered driver.yaml or flags (${dflags[*]}) of $name: $msg" ;;
        esac
        msg=$("$executor_bin" --config "$OUT/$name.executor.yaml" --id e "${eflags[@]}" --slots 0 2>&1 || true)
        case $msg in
            *"invalid setting slots"*) ;;
            *) die "weir-executor rejected the rendered executor.yaml or flags (${eflags[*]}) of $name: $msg" ;;
        esac
    done
else
    say "skipping the binary parse check: build weir-driver and weir-executor first (cargo build --bins)"
fi

say "chart and Dockerfile checks passed in $(( $(now) - t )) s"
