"""Checks of the chart's monitoring side, called by check_chart.py: the HTTP
port and its probes, the ServiceMonitors, and the Grafana dashboard
(deploy/grafana/weir.json, and the chart's copy and ConfigMap).

Every function takes `check(cond, msg)`, check_chart.py's way of recording
a failure, so that its self-test can count what these checks catch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import yaml

Check = Callable[[bool, str], bool]

# The metrics the dashboard shows, every one of them (name -> type); each
# is registered in one of METRIC_SOURCES (counters without `_total`, which
# the Prometheus client library appends).
METRIC_SOURCES = (Path("driver/src/metrics.rs"), Path("executor/src/metrics.rs"))
METRICS = {
    "weir_raft_term": "gauge",
    "weir_raft_is_leader": "gauge",
    "weir_raft_leader_id": "gauge",
    "weir_raft_commit_index": "gauge",
    "weir_raft_applied_index": "gauge",
    "weir_raft_proposal_seconds": "histogram",
    "weir_batches_committed_total": "counter",
    "weir_records_in_total": "counter",
    "weir_records_out_total": "counter",
    "weir_records_skipped_total": "counter",
    "weir_records_late_total": "counter",
    "weir_records_lost_total": "counter",
    "weir_batch_duration_seconds": "histogram",
    "weir_batch_phase_seconds": "histogram",
    "weir_scheduling_delay_seconds": "gauge",
    "weir_watermark_seconds": "gauge",
    "weir_source_lag_records": "gauge",
    "weir_state_keys": "gauge",
    "weir_state_bytes": "gauge",
    "weir_job_state": "gauge",
    "weir_job_degraded": "gauge",
    "weir_task_failures_total": "counter",
    "weir_executors": "gauge",
    "weir_executor_registered": "gauge",
    "weir_task_seconds": "histogram",
    "weir_checkpoint_write_seconds": "histogram",
    "weir_checkpoint_bytes_total": "counter",
    "weir_shuffle_fetch_seconds": "histogram",
    "weir_state_restore_seconds": "histogram",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
DASHBOARD = Path("deploy/grafana/weir.json")
CHART_DASHBOARD = Path("deploy/helm/weir/dashboards/weir.json")
# Endpoint fields the chart may use; a misspelt one would be dropped by the
# API server's pruning without an error (no CRD schema is checked here).
ENDPOINT_KEYS = {"port", "path", "interval", "honorLabels", "relabelings", "scheme", "tlsConfig", "authorization"}
TLS_CONFIG_KEYS = {"serverName", "ca", "cert", "keySecret"}


def http_port(container: dict) -> int | None:
    return next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == "http"), None)


def check_http(check: Check, src: str, what: str, container: dict, listen: str | None, mode: str) -> None:
    """The HTTP port of one process: declared, listened on, and the probes on it.

    Readiness asks /readyz (a driver that has caught up, an executor that is
    registered); liveness and startup ask /healthz only, so that a driver
    replaying the Raft log or waiting to be added is never restarted."""
    where = f"{src}: {what}"
    port = http_port(container)
    if not check(port is not None, f"{where} declares no container port named http"):
        return
    check(listen == f"0.0.0.0:{port}",
          f"{where} --http-listen is {listen!r}, not 0.0.0.0:{port} (the http container port, on every interface "
          "for kubelet and Prometheus)")
    scheme = "HTTPS" if mode == "tls" else "HTTP"
    for name, path, required in (("readinessProbe", "/readyz", True), ("livenessProbe", "/healthz", True),
                                 ("startupProbe", "/healthz", False)):
        probe = container.get(name)
        if not probe:
            check(not required, f"{where} has no {name}")
            continue
        get = probe.get("httpGet")
        if not check(get is not None, f"{where} {name} is not an httpGet on the HTTP port "
                                      f"(has {sorted(k for k in probe if k in ('grpc', 'tcpSocket', 'exec'))})"):
            continue
        check(get.get("port") in ("http", port), f"{where} {name} asks port {get.get('port')}, not the http port {port}")
        check(get.get("path") == path,
              f"{where} {name} asks {get.get('path')}, not {path}"
              + (" (liveness on /readyz restarts a driver that is catching up)" if path == "/healthz" else ""))
        check(get.get("scheme", "HTTP") == scheme,
              f"{where} {name} scheme is {get.get('scheme', 'HTTP')}, the port speaks {scheme}")


def check_service_monitors(check: Check, selects, tls_secrets, docs: list[dict], src: str, dsts: dict, ests: dict,
                           mode: str, monitor: str, ns: str) -> None:
    """The ServiceMonitors: present iff expected (`monitor` is none, plain,
    certificate or token), and each driver and executor pod scraped once, on
    /metrics of its http port, with the scheme and credentials of `monitor`.

    check_chart's helpers come along: `selects(selector, labels)`, and
    `tls_secrets(pod_spec, volume_name)`, which maps the TLS Secrets of a
    pod's volume to their directories."""
    sms = [d for d in docs if d["kind"] == "ServiceMonitor"]
    if monitor == "none":
        check(not sms, f"{src}: renders ServiceMonitors {[s['metadata']['name'] for s in sms]}, expected none "
                       "(monitoring.serviceMonitor.enabled false, or auto without the CRD)")
        return
    if not check(bool(sms), f"{src}: renders no ServiceMonitor, expected them ({monitor})"):
        return
    services = [d for d in docs if d["kind"] == "Service"]
    certs = {d["spec"]["secretName"]: d for d in docs if d["kind"] == "Certificate"}
    for sm in sms:
        where = f"{src}: ServiceMonitor {sm['metadata']['name']}"
        check(sm["spec"].get("namespaceSelector", {}).get("matchNames") == [ns],
              f"{where}: namespaceSelector is not the release namespace {ns}")
        for ep in sm["spec"]["endpoints"]:
            check(set(ep) <= ENDPOINT_KEYS, f"{where}: endpoint fields {sorted(set(ep) - ENDPOINT_KEYS)} are unknown")

    for sts, what in ((dsts, "driver"), (ests, "executor")):
        labels = sts["spec"]["template"]["metadata"]["labels"]
        pod = sts["spec"]["template"]["spec"]
        container = pod["containers"][0]
        port = http_port(container)
        scrapes = []
        for sm in sms:
            sel = sm["spec"]["selector"].get("matchLabels", {})
            for svc in services:
                if not (selects(sel, svc["metadata"].get("labels", {})) and selects(svc["spec"].get("selector", {}), labels)):
                    continue
                for ep in sm["spec"]["endpoints"]:
                    for p in svc["spec"]["ports"]:
                        if p.get("name") == ep.get("port"):
                            scrapes.append((sm, ep, svc, p))
        names = [f"{s[0]['metadata']['name']} via Service {s[2]['metadata']['name']}" for s in scrapes]
        if not check(len(scrapes) == 1, f"{src}: the {what} pods are scraped {len(scrapes)} times ({names}), "
                                        "expected once"):
            continue
        sm, ep, svc, p = scrapes[0]
        where = f"{src}: ServiceMonitor {sm['metadata']['name']}"
        check(p.get("targetPort") in ("http", port),
              f"{where} scrapes Service {svc['metadata']['name']} port {p.get('name')}, which targets "
              f"{p.get('targetPort')}, not the {what}s' http port {port}")
        check(ep.get("path") == "/metrics", f"{where}: path is {ep.get('path')}, not /metrics")
        check(ep.get("honorLabels") is True,
              f"{where}: honorLabels is not true (Prometheus would rename Weir's job label to exported_job)")
        tls = ep.get("tlsConfig")
        auth = ep.get("authorization")
        if mode != "tls":
            check(monitor == "plain" and ep.get("scheme", "http") == "http" and tls is None and auth is None,
                  f"{where}: without TLS the endpoint must be plain http without credentials")
            continue
        check(ep.get("scheme") == "https", f"{where}: scheme is {ep.get('scheme')}, the port speaks HTTPS")
        if not check(isinstance(tls, dict), f"{where}: no tlsConfig"):
            continue
        check(set(tls) <= TLS_CONFIG_KEYS, f"{where}: tlsConfig fields {sorted(set(tls) - TLS_CONFIG_KEYS)} "
                                           "(insecureSkipVerify and file paths are not for Weir)")
        ca = tls.get("ca", {}).get("secret", {})
        check(bool(ca.get("name")) and ca.get("key") == "ca.crt", f"{where}: tlsConfig.ca is not ca.crt of a Secret")
        server = tls.get("serverName")
        if check(bool(server), f"{where}: tlsConfig has no serverName (the pods' certificates name no IP)"):
            for secret in tls_secrets(pod, "tls"):
                cert = certs.get(secret)
                if cert is not None:
                    check(server in cert["spec"].get("dnsNames", []),
                          f"{where}: serverName {server} is not on Certificate {cert['metadata']['name']} "
                          f"({cert['spec'].get('dnsNames')}): Prometheus would refuse that {what}")
        has_cert = "cert" in tls or "keySecret" in tls
        check(has_cert != (auth is not None),
              f"{where}: needs exactly one credential, a client certificate or a bearer token")
        if monitor == "certificate":
            secret = tls.get("cert", {}).get("secret", {})
            key = tls.get("keySecret", {})
            check(secret.get("key") == "tls.crt" and key.get("key") == "tls.key" and secret.get("name")
                  and secret.get("name") == key.get("name"),
                  f"{where}: the client certificate is not tls.crt and tls.key of one Secret")
            check_client_role(check, docs, src, where, certs.get(secret.get("name")))
        else:
            check(bool(auth) and str(auth.get("type", "Bearer")).lower() == "bearer"
                  and bool(auth.get("credentials", {}).get("name")) and bool(auth.get("credentials", {}).get("key")),
                  f"{where}: expected a bearer token from a Secret (authorization), has {auth}")


def check_client_role(check: Check, docs: list[dict], src: str, where: str, cert: dict | None) -> None:
    """Prometheus's client certificate, when the chart issues it, names a
    client whose role in the chart's tokens file lets it read /metrics."""
    if cert is None:
        return  # made outside the chart
    uris = cert["spec"].get("uris", [])
    m = re.fullmatch(r"weir://client/([A-Za-z0-9._@-]+)", uris[0]) if len(uris) == 1 else None
    if not check(m is not None, f"{where}: Certificate {cert['metadata']['name']} names {uris}, not one weir://client/<name>"):
        return
    secret = next((d for d in docs if d["kind"] == "Secret" and "tokens.yaml" in d.get("stringData", {})), None)
    if secret is None:
        return  # tokens.existingSecret
    entries = yaml.safe_load(secret["stringData"]["tokens.yaml"]) or []
    entry = next((e for e in entries if e.get("name") == m.group(1)), None)
    check(entry is not None and "sha256" not in entry and entry.get("role") in ("viewer", "operator", "admin"),
          f"{where}: the tokens file gives weir://client/{m.group(1)} no role (has {entry}); /metrics needs viewer")


def client_cert_secrets(docs: list[dict]) -> set[str]:
    """Secrets of client certificates the ServiceMonitors use."""
    out = set()
    for sm in (d for d in docs if d["kind"] == "ServiceMonitor"):
        for ep in sm["spec"]["endpoints"]:
            name = ep.get("tlsConfig", {}).get("cert", {}).get("secret", {}).get("name")
            if name:
                out.add(name)
    return out


def check_dashboard_configmaps(check: Check, docs: list[dict], src: str, repo: Path) -> None:
    """A rendered dashboard ConfigMap holds exactly deploy/grafana/weir.json."""
    want = json.loads((repo / DASHBOARD).read_text())
    for cm in (d for d in docs if d["kind"] == "ConfigMap" and "weir.json" in d.get("data", {})):
        try:
            got = json.loads(cm["data"]["weir.json"])
        except ValueError as e:
            check(False, f"{src}: ConfigMap {cm['metadata']['name']} weir.json is not JSON: {e}")
            continue
        check(got == want, f"{src}: ConfigMap {cm['metadata']['name']} is not the dashboard of {DASHBOARD}")


# ---------------------------------------------------------------------------
# The Grafana dashboard


def check_dashboard(check: Check, repo: Path) -> None:
    """deploy/grafana/weir.json: importable as is, on any Prometheus data
    source, using only (and every one of) the contract's metrics the way
    their types allow; the chart's copy is the same file."""
    path = repo / DASHBOARD
    text = path.read_text()
    check((repo / CHART_DASHBOARD).read_text() == text,
          f"{CHART_DASHBOARD} differs from {DASHBOARD}: copy it (cp {DASHBOARD} {CHART_DASHBOARD})")
    try:
        board = json.loads(text)
    except ValueError as e:
        check(False, f"{path}: not JSON: {e}")
        return
    check_board(check, repo, path, board)


def check_board(check: Check, repo: Path, path: Path, board: dict) -> None:
    """The checks of check_dashboard on a parsed dashboard."""
    check(board.get("id") is None, f"{path}: has an id (a dashboard exported for sharing has none)")
    check(bool(board.get("uid")) and bool(board.get("title")), f"{path}: needs a uid and a title")
    variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
          f"{path}: no `datasource` variable of type datasource over Prometheus data sources")
    job = variables.get("job", {})
    query = job.get("query", {})
    query = query.get("query", "") if isinstance(query, dict) else query
    check(re.fullmatch(r"label_values\(weir_batches_committed_total(\{[^}]*\})?,\s*job\)", query or "") is not None,
          f"{path}: the `job` variable is not label_values(weir_batches_committed_total, job): {query!r}")

    panels = board.get("panels", [])
    ids = [p.get("id") for p in panels]
    check(len(ids) == len(set(ids)) and None not in ids, f"{path}: panel ids are missing or repeated: {ids}")
    used: set[str] = set()
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        where = f"{path}: panel {p.get('title')!r}"
        pos = p.get("gridPos", {})
        check(pos.get("x", 0) + pos.get("w", 0) <= 24, f"{where}: wider than the 24 grid columns")
        for x in range(pos.get("x", 0), pos.get("x", 0) + pos.get("w", 0)):
            for y in range(pos.get("y", 0), pos.get("y", 0) + pos.get("h", 0)):
                other = cells.setdefault((x, y), p.get("title"))
                if other != p.get("title"):
                    check(False, f"{where}: overlaps panel {other!r}")
                    break
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        targets = p.get("targets", [])
        check(bool(targets), f"{where}: no queries")
        for t in [p] + targets:
            check(t.get("datasource") == {"type": "prometheus", "uid": "${datasource}"},
                  f"{where}: datasource {t.get('datasource')} is not the ${{datasource}} variable")
        for t in targets:
            used |= check_expr(check, where, t.get("expr", ""))
    for v in variables.values():
        q = v.get("query", "")
        used |= check_expr(check, f"{path}: variable {v['name']}", q.get("query", "") if isinstance(q, dict) else q,
                           labels_only=True)
    missing = sorted(set(METRICS) - used)
    check(not missing, f"{path}: shows nothing of {missing}")
    registered = set()
    for source in METRIC_SOURCES:
        if check((repo / source).exists(), f"{source} does not exist; the dashboard's metrics are registered there"):
            registered |= set(re.findall(r'"(weir_[a-z0-9_]+)"', (repo / source).read_text()))
    for name in sorted(used):
        exported = name.removesuffix("_total") if METRICS[name] == "counter" else name
        check(exported in registered,
              f"{path}: {name} is registered in none of {', '.join(map(str, METRIC_SOURCES))}")
    docs = repo / "docs" / "metrics.md"
    if docs.exists():
        documented = set(re.findall(r"weir_[a-z0-9_]+", docs.read_text()))
        check(used <= documented, f"{path}: uses {sorted(used - documented)}, which {docs} does not document")


def check_expr(check: Check, where: str, expr: str, labels_only: bool = False) -> set[str]:
    """The metrics one PromQL expression uses; fails on a query that does
    not parse (Grafana's variables filled in), any weir_ name not in
    METRICS, a histogram series of a non-histogram, or (unless the
    expression only looks up labels, as label_values does) a counter
    outside rate() or increase()."""
    if not labels_only:
        import promql_parser  # installed by check.sh

        filled = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
        filled = re.sub(r"\$\{?\w+\}?", "x", filled)
        try:
            promql_parser.parse(filled)
        except Exception as e:  # the parser raises plain exceptions
            check(False, f"{where}: the query does not parse: {e}: {expr}")
    used = set()
    for m in re.finditer(r"\bweir_[a-z0-9_]+", expr):
        name = m.group(0)
        base = name
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in METRICS:
                base = name[: -len(suffix)]
        kind = METRICS.get(base)
        if not check(kind is not None, f"{where}: {name} is not a Weir metric"):
            continue
        check(base == name or kind == "histogram", f"{where}: {name}: {base} is a {kind}, not a histogram")
        if labels_only:
            used.add(base)
            continue
        if kind == "counter" or name.endswith(HISTOGRAM_SUFFIXES):
            check(re.search(r"\b(rate|increase|irate)\(\s*$", expr[: m.start()]) is not None,
                  f"{where}: {name} is a counter, read outside rate() or increase()")
        if kind == "histogram":
            check(name != base, f"{where}: {name} is a histogram: use its _bucket, _sum or _count series")
        used.add(base)
    return used
