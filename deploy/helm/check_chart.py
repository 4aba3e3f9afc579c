#!/usr/bin/env python3
"""Checks of our own on the Weir chart and image, run by deploy/helm/check.sh.

    check_chart.py dockerfile REPO VALUES_YAML
    check_chart.py dashboard REPO
    check_chart.py rendered REPO MANIFESTS_YAML EXPECTED_DRIVERS EXPECTED_EXECUTORS K8S_VERSION tls|insecure MONITOR
    check_chart.py selftest REPO MANIFESTS_YAML EXPECTED_DRIVERS EXPECTED_EXECUTORS K8S_VERSION tls|insecure MONITOR
    check_chart.py settings MANIFESTS_YAML PREFIX

MONITOR is the ServiceMonitors a rendering must have: none, plain (without
TLS), certificate (Prometheus's client certificate) or token (a bearer token).

`dockerfile` checks deploy/Dockerfile against the Cargo manifests.
`dashboard` checks the Grafana dashboard (check_monitoring.py) and that
breaking it in known ways is caught.
`rendered` validates every manifest of one `helm template` output with
kubernetes-validate (the ServiceMonitor and cert-manager CRDs are skipped
explicitly) and checks what a schema cannot: the Raft peer list, ports,
the HTTP port and its probes (readiness on /readyz, liveness and startup
on /healthz, HTTPS with TLS), the PDB quorum, that every flag and
settings-file key the chart uses exists in the Rust sources, and security:
every driver and executor gets either all TLS flags and the tokens file or
--insecure (as expected), each pod's certificate files come from its own
Secret, every cert-manager Certificate names the identity of the pod (or
the Prometheus client) that uses it, the tokens file parses, the
NetworkPolicies admit what Weir needs and no more on the executor port,
the ServiceMonitors exist exactly when expected and scrape every pod once
with the right scheme and credentials, and a dashboard ConfigMap holds the
dashboard. `selftest` breaks a good rendering in known ways and fails
unless every breakage is caught. `settings` writes the rendered settings
files and the flags each binary gets from the chart (for check.sh to feed
the real binaries). Prints every failure and exits 1 if there was any.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import sys
import tomllib
from pathlib import Path

import yaml

import check_monitoring as monitoring

FAILURES: list[str] = []


def fail(msg: str) -> None:
    FAILURES.append(msg)
    print(f"FAIL {msg}", file=sys.stderr)


def check(cond: bool, msg: str) -> bool:
    if not cond:
        fail(msg)
    return cond


# ---------------------------------------------------------------------------
# What the Rust sources define


def clap_flags(source: Path, struct: str) -> set[str]:
    """`--long-names` of the fields marked #[arg(long ...)] in a clap struct."""
    body = struct_body(source, struct)
    flags = set()
    pending = None
    for line in body.splitlines():
        line = line.strip()
        m = re.match(r"#\[arg\((.*)\)\]", line)
        if m:
            attrs = m.group(1)
            if re.search(r"\blong\b", attrs):
                named = re.search(r'\blong\s*=\s*"([^"]+)"', attrs)
                pending = named.group(1) if named else ""
            continue
        m = re.match(r"pub\s+(\w+)\s*:", line)
        if m and pending is not None:
            flags.add("--" + (pending or m.group(1).replace("_", "-")))
            pending = None
    if not flags:
        fail(f"no #[arg(long ...)] fields found in {struct} in {source}")
    return flags


def serde_fields(source: Path, struct: str) -> set[str]:
    """Field names of a serde struct (the keys its YAML file accepts)."""
    body = struct_body(source, struct)
    text = source.read_text()
    if not re.search(r"#\[serde\(deny_unknown_fields\)\]\s*pub struct " + struct, text):
        fail(f"{source}: {struct} no longer denies unknown fields; the key check assumes it does")
    fields = set(re.findall(r"^\s*(?:pub\s+)?(\w+)\s*:", body, re.M))
    if not fields:
        fail(f"no fields found in {struct} in {source}")
    return fields


def struct_body(source: Path, struct: str) -> str:
    text = source.read_text()
    m = re.search(r"pub struct " + struct + r"\s*\{(.*?)\n\}", text, re.S)
    if not m:
        fail(f"struct {struct} not found in {source}")
        return ""
    return m.group(1)


def cargo_packages(repo: Path) -> dict[str, set[str]]:
    """Workspace package name -> its binary names."""
    root = tomllib.loads((repo / "Cargo.toml").read_text())
    packages = {}
    for member in root["workspace"]["members"]:
        manifest = tomllib.loads((repo / member / "Cargo.toml").read_text())
        name = manifest["package"]["name"]
        bins = {b["name"] for b in manifest.get("bin", [])}
        if not bins and (repo / member / "src" / "main.rs").exists():
            bins = {name}
        packages[name] = bins
    return packages


# ---------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        lines.append(current)
        current = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def check_dockerfile(repo: Path, values_path: Path) -> None:
    path = repo / "deploy" / "Dockerfile"
    values = yaml.safe_load(values_path.read_text())
    instructions = dockerfile_instructions(path)
    args: dict[str, str] = {}
    stages: list[dict] = []
    for word, rest in instructions:
        if word == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            image = re.sub(r"\$\{?(\w+)\}?", lambda v: args.get(v.group(1), v.group(0)), m.group(1))
            stages.append({"image": image, "name": m.group(2), "ins": []})
        elif stages:
            stages[-1]["ins"].append((word, rest))
    if not check(len(stages) >= 2, f"{path}: expected a multi-stage build, found {len(stages)} stage(s)"):
        return
    builder, final = stages[0], stages[-1]
    check(builder["image"] == "rust:1-bookworm",
          f"{path}: builder stage should use rust:1-bookworm, uses {builder['image']}")
    check(final["image"] in ("debian:bookworm-slim", "gcr.io/distroless/cc-debian12",
                             "gcr.io/distroless/cc-debian12:nonroot"),
          f"{path}: final stage should be debian:bookworm-slim or distroless cc, is {final['image']}")

    packages = cargo_packages(repo)
    wanted = {"weir", "weir-driver", "weir-executor"}
    builds = [rest for word, rest in builder["ins"] if word == "RUN" and "cargo build" in rest]
    if check(len(builds) == 1, f"{path}: expected one `cargo build` in the builder stage, found {len(builds)}"):
        cmd = builds[0][builds[0].index("cargo build"):].split("&&")[0].split()
        for flag in ("--release", "--locked", "--bins"):
            check(flag in cmd, f"{path}: cargo build lacks {flag}")
        selected = {cmd[i + 1] for i, a in enumerate(cmd) if a == "-p"}
        check(selected == wanted, f"{path}: cargo build -p selects {sorted(selected)}, expected {sorted(wanted)}")
        for p in selected:
            check(p in packages, f"{path}: package {p} is not a workspace member ({sorted(packages)})")
    # The build's Debian packages are listed once, in scripts/bootstrap.sh:
    # the builder copies that script in and runs it before cargo.
    boot = [i for i, (word, rest) in enumerate(builder["ins"])
            if word == "COPY" and rest.split()[0] == "scripts/bootstrap.sh"]
    if check(len(boot) == 1, f"{path}: the builder stage should COPY scripts/bootstrap.sh once, found {len(boot)}"):
        dest = builder["ins"][boot[0]][1].split()[-1]
        runs = [i for i, (word, rest) in enumerate(builder["ins"])
                if word == "RUN" and dest in rest.split("&&")[0].split()]
        cargo = [i for i, (word, rest) in enumerate(builder["ins"]) if word == "RUN" and "cargo build" in rest]
        check(bool(runs) and bool(cargo) and runs[0] < cargo[0],
              f"{path}: the builder stage should run {dest} (scripts/bootstrap.sh) before cargo build")
    for word, rest in builder["ins"]:
        if word == "RUN" and "apt-get install" in rest:
            check(False, f"{path}: the builder stage installs packages itself ({rest}); "
                         "list them in scripts/bootstrap.sh instead")

    bins = set().union(*(packages.get(p, set()) for p in wanted))
    copies = [rest for word, rest in final["ins"] if word in ("COPY", "ADD")]
    check(len(copies) == 1, f"{path}: final stage should have exactly one COPY (the binaries), has {copies}")
    for rest in copies:
        parts = rest.split()
        opts = [p for p in parts if p.startswith("--")]
        files = [p for p in parts if not p.startswith("--")]
        check(f"--from={builder['name']}" in opts, f"{path}: final COPY is not from the builder stage: {rest}")
        copied = {Path(f).name for f in files[:-1]}
        check(copied == bins, f"{path}: final stage copies {sorted(copied)}, the Cargo [[bin]]s are {sorted(bins)}")
    build_tools = {"cmake", "gcc", "g++", "make", "build-essential", "pkg-config", "cargo", "rustc", "clang"}
    for word, rest in final["ins"]:
        if word == "RUN" and "apt-get install" in rest:
            pkgs = set(rest.split("apt-get install", 1)[1].split("&&")[0].split()) - {"-y", "--no-install-recommends"}
            bad = {p for p in pkgs if p in build_tools or p.endswith("-dev")}
            check(not bad, f"{path}: final stage installs build tools {sorted(bad)}")
    users = [rest for word, rest in final["ins"] if word == "USER"]
    check(bool(users) and users[-1].split(":")[0] == "10001",
          f"{path}: final stage must run as uid 10001 (USER 10001), has {users}")
    check(not any(word == "ENTRYPOINT" for word, _ in final["ins"]),
          f"{path}: final stage must not set an ENTRYPOINT (the chart runs the binaries as commands)")
    exposed = {int(p.split("/")[0]) for word, rest in final["ins"] if word == "EXPOSE" for p in rest.split()}
    for what, port in (("driver", values["driver"]["port"]), ("executor", values["executor"]["port"]),
                       ("HTTP", values["monitoring"]["http"]["port"])):
        check(port in exposed, f"{path}: EXPOSE lacks the chart's default {what} port {port} (has {sorted(exposed)})")


# ---------------------------------------------------------------------------
# Rendered manifests


def containers_of(pod_spec: dict) -> list[dict]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec.get("containers", []))


def port_ok(port, container: dict) -> bool:
    declared = container.get("ports", [])
    if isinstance(port, int):
        return any(p["containerPort"] == port for p in declared)
    return any(p.get("name") == port for p in declared)


def flags_in(tokens: list[str]) -> list[str]:
    return [t.split("=", 1)[0] for t in tokens if t.startswith("--")]


def flag_value(tokens: list[str], flag: str) -> str | None:
    for i, t in enumerate(tokens):
        if t == flag and i + 1 < len(tokens):
            return tokens[i + 1]
        if t.startswith(flag + "="):
            return t.split("=", 1)[1]
    return None


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def validate_schemas(docs: list[dict], source: str, k8s_version: str) -> None:
    import kubernetes_validate

    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            print(f"  skip {name}: a Prometheus Operator CRD, not in the Kubernetes schemas", flush=True)
            continue
        if doc.get("apiVersion", "") == "cert-manager.io/v1":
            # Not in the Kubernetes schemas; check_certificates checks what Weir needs.
            continue
        try:
            kubernetes_validate.validate(doc, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            fail(f"{source}: {name} does not validate against Kubernetes {k8s_version}: {path}: {e.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as e:
            fail(f"{source}: {name}: {e.message}")


def load_docs(manifests: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(manifests.read_text()) if d]


def check_rendered(repo: Path, docs: list[dict], src: str, n_drivers: int, n_executors: int, k8s_version: str,
                   mode: str, monitor: str) -> None:
    validate_schemas(docs, src, k8s_version)

    driver_flags = clap_flags(repo / "driver/src/config.rs", "DriverArgs")
    driver_keys = serde_fields(repo / "driver/src/config.rs", "DriverFile")
    executor_flags = clap_flags(repo / "executor/src/config.rs", "Args")
    executor_keys = serde_fields(repo / "executor/src/config.rs", "FileConfig")

    for d in docs:
        labels = d["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                    "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"):
            check(key in labels, f"{src}: {d['kind']}/{d['metadata']['name']} lacks label {key}")

    def component(kind: str, comp: str) -> list[dict]:
        return [d for d in docs if d["kind"] == kind
                and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == comp]

    stss = {c: component("StatefulSet", c) for c in ("driver", "executor")}
    for c, found in stss.items():
        if not check(len(found) == 1, f"{src}: expected one {c} StatefulSet, found {len(found)}"):
            return
    dsts, ests = stss["driver"][0], stss["executor"][0]
    services = [d for d in docs if d["kind"] == "Service"]
    svc_by_name = {s["metadata"]["name"]: s for s in services}
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    ns = dsts["metadata"].get("namespace", "default")
    check(dsts["spec"]["replicas"] == n_drivers,
          f"{src}: driver StatefulSet has {dsts['spec']['replicas']} replicas, expected {n_drivers}")
    check(ests["spec"]["replicas"] == n_executors,
          f"{src}: executor StatefulSet has {ests['spec']['replicas']} replicas, expected {n_executors}")

    # Every workload: selector, ports, probes, mounts, security.
    for sts in (dsts, ests):
        name = sts["metadata"]["name"]
        tpl = sts["spec"]["template"]
        pod = tpl["spec"]
        check(selects(sts["spec"]["selector"]["matchLabels"], tpl["metadata"]["labels"]),
              f"{src}: {name}: selector does not match its pod labels")
        check(pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{src}: {name}: pod runAsNonRoot is not true")
        check(pod.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault",
              f"{src}: {name}: pod seccompProfile is not RuntimeDefault")
        volumes = {v["name"] for v in pod.get("volumes", [])}
        volumes |= {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
        for c in containers_of(pod):
            where = f"{src}: {name}/{c['name']}"
            sc = c.get("securityContext", {})
            check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem is not true")
            check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation is not false")
            check(sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot is not true")
            check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: capabilities do not drop ALL")
            for m in c.get("volumeMounts", []):
                check(m["name"] in volumes, f"{where}: mounts undeclared volume {m['name']}")
            for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = c.get(probe_name)
                if not probe:
                    continue
                kinds = [k for k in ("grpc", "tcpSocket", "httpGet", "exec") if k in probe]
                check(len(kinds) == 1, f"{where}: {probe_name} has handlers {kinds}")
                for k in kinds:
                    if k != "exec":
                        check(port_ok(probe[k]["port"], c),
                              f"{where}: {probe_name} {k} port {probe[k]['port']} is not a declared container port")

    # Services route to declared container ports of the pods they select.
    for svc in services:
        sel = svc["spec"].get("selector", {})
        targets = [s for s in (dsts, ests) if selects(sel, s["spec"]["template"]["metadata"]["labels"])]
        if not check(bool(targets), f"{src}: Service {svc['metadata']['name']} selects no workload"):
            continue
        for p in svc["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            for s in targets:
                check(any(port_ok(tp, c) for c in s["spec"]["template"]["spec"]["containers"]),
                      f"{src}: Service {svc['metadata']['name']} port {p.get('name')} targets {tp}, "
                      f"not a container port of {s['metadata']['name']}")

    # --- Drivers --------------------------------------------------------------
    dpod = dsts["spec"]["template"]["spec"]
    dc = next((c for c in dpod["containers"] if c["name"] == "driver"), None)
    if not check(dc is not None, f"{src}: driver StatefulSet has no container named driver"):
        return
    grpc_port = next((p["containerPort"] for p in dc.get("ports", []) if p.get("name") == "grpc"), None)
    check(grpc_port is not None, f"{src}: driver container declares no port named grpc")
    # command: /bin/sh -c SCRIPT weir-driver EXTRA_ARGS... (weir-driver is the script's $0).
    cmd = dc["command"]
    script = cmd[2] if cmd[:2] == ["/bin/sh", "-c"] and len(cmd) >= 4 and cmd[3] == "weir-driver" else None
    if check(script is not None, f"{src}: driver command is not the /bin/sh -c id wrapper: {dc['command']}"):
        exec_line = re.search(r"exec (weir-driver\b.*?)(?:\n\S|\Z)", script.replace("\\\n", " "), re.S)
        tokens = shlex.split(exec_line.group(1)) if exec_line else []
        check(tokens[:1] == ["weir-driver"], f"{src}: the wrapper does not exec weir-driver")
        check('"$@"' in script, f"{src}: the wrapper drops driver.extraArgs (no \"$@\")")
        tokens = tokens[1:] + cmd[4:] + list(dc.get("args", []))
        for f in flags_in(tokens):
            check(f in driver_flags, f"{src}: driver flag {f} does not exist in DriverArgs (driver/src/config.rs)")
        listen = flag_value(tokens, "--listen")
        if check(listen is not None, f"{src}: the driver gets no --listen"):
            check(listen.rsplit(":", 1)[1] == str(grpc_port),
                  f"{src}: driver --listen {listen} is not the container port {grpc_port}")
        check("$(( ${POD_NAME##*-} + 1 ))" in script, f"{src}: driver id is not derived from the pod ordinal + 1")
        data_dir = flag_value(tokens, "--data-dir")
        claims = {c["metadata"]["name"] for c in dsts["spec"].get("volumeClaimTemplates", [])}
        mounts = [m for m in dc.get("volumeMounts", []) if m["name"] in claims]
        check(data_dir is not None and any(data_dir.startswith(m["mountPath"].rstrip("/") + "/") for m in mounts),
              f"{src}: driver --data-dir {data_dir} is not a subdirectory of a volumeClaimTemplate mount "
              f"(a fresh volume's lost+found would make the driver refuse the mount root)")
        check_security(docs, src, mode, dsts, dc, tokens, "${POD_NAME}", n_drivers, "driver")
        advertise = flag_value(tokens, "--advertise")
        headless_name = dsts["spec"]["serviceName"]
        check(advertise is not None and advertise.endswith(f".{headless_name}.{ns}.svc.cluster.local:{grpc_port}")
              and advertise.startswith("${POD_NAME}."),
              f"{src}: driver --advertise {advertise} is not the pod's stable DNS name")

    headless = svc_by_name.get(dsts["spec"]["serviceName"])
    if check(headless is not None, f"{src}: driver serviceName {dsts['spec']['serviceName']} has no Service"):
        check(headless["spec"].get("clusterIP") == "None", f"{src}: driver peer Service is not headless")
        check(headless["spec"].get("publishNotReadyAddresses") is True,
              f"{src}: driver headless Service must publish not-ready addresses (peers resolve each other while forming)")
    client = [s for s in component("Service", "driver") if s["spec"].get("clusterIP") != "None"]
    check(len(client) == 1, f"{src}: expected one client Service for the drivers, found {len(client)}")

    monitoring.check_http(check, src, "driver", dc, flag_value(tokens, "--http-listen"), mode)

    config_volume = next((v for v in dpod.get("volumes", []) if "configMap" in v), None)
    cm = configmaps.get(config_volume["configMap"]["name"]) if config_volume else None
    if check(cm is not None and "driver.yaml" in cm["data"], f"{src}: no ConfigMap with driver.yaml mounted in drivers"):
        check(flag_value(tokens, "--config") == "/etc/weir/driver.yaml"
              and any(m.get("subPath") == "driver.yaml" and m["mountPath"] == "/etc/weir/driver.yaml"
                      for m in dc["volumeMounts"]),
              f"{src}: driver.yaml is not mounted where --config points")
        dfile = yaml.safe_load(cm["data"]["driver.yaml"])
        unknown = set(dfile) - driver_keys
        check(not unknown, f"{src}: driver.yaml keys {sorted(unknown)} are not DriverFile fields {sorted(driver_keys)}")
        peers = dfile.get("peers", {})
        check(sorted(peers) == list(range(1, n_drivers + 1)),
              f"{src}: peer ids {sorted(peers)} are not 1..{n_drivers}")
        for i in range(n_drivers):
            want = f"{dsts['metadata']['name']}-{i}.{dsts['spec']['serviceName']}.{ns}.svc.cluster.local:{grpc_port}"
            check(peers.get(i + 1) == want, f"{src}: peer {i + 1} is {peers.get(i + 1)!r}, expected {want!r}")
        check(dfile.get("election_ticks", 10) > dfile.get("heartbeat_ticks", 2),
              f"{src}: election_ticks must exceed heartbeat_ticks")

        # --- Executors ----------------------------------------------------------
        epod = ests["spec"]["template"]["spec"]
        ec = next((c for c in epod["containers"] if c["name"] == "executor"), None)
        if check(ec is not None and "executor.yaml" in cm["data"], f"{src}: no executor container or executor.yaml"):
            efile = yaml.safe_load(cm["data"]["executor.yaml"])
            unknown = set(efile) - executor_keys
            check(not unknown, f"{src}: executor.yaml keys {sorted(unknown)} are not FileConfig fields {sorted(executor_keys)}")
            check(efile.get("drivers") == [peers[i] for i in sorted(peers)],
                  f"{src}: executor drivers {efile.get('drivers')} are not the driver peer addresses")
            check(ec["command"] == ["weir-executor"], f"{src}: executor command is {ec['command']}")
            eargs = ec.get("args", [])
            for f in flags_in(eargs):
                check(f in executor_flags, f"{src}: executor flag {f} does not exist in Args (executor/src/config.rs)")
            eport = next((p["containerPort"] for p in ec.get("ports", []) if p.get("name") == "grpc"), None)
            elisten = flag_value(eargs, "--listen")
            check(elisten is not None and eport is not None and elisten.rsplit(":", 1)[1] == str(eport),
                  f"{src}: executor --listen {elisten} is not the container port {eport}")
            check(flag_value(eargs, "--id") == "$(POD_NAME)"
                  and any(e["name"] == "POD_NAME" and e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"
                          for e in ec.get("env", [])),
                  f"{src}: executor --id is not the pod name")
            eadv = flag_value(eargs, "--advertise") or ""
            check(eadv == f"$(POD_NAME).{ests['spec']['serviceName']}.{ns}.svc.cluster.local:{eport}"
                  and ests["spec"]["serviceName"] in svc_by_name,
                  f"{src}: executor --advertise {eadv!r} is not its stable DNS name under a headless Service")
            check_security(docs, src, mode, ests, ec, eargs, "$(POD_NAME)", n_executors, "executor")
            monitoring.check_http(check, src, "executor", ec, flag_value(eargs, "--http-listen"), mode)
            root = efile.get("state_root", "")
            if "://" in root:
                check(root.split("://")[0] in ("hdfs", "viewfs"), f"{src}: state_root scheme of {root} is unsupported")
            else:
                check(any(root.startswith(m["mountPath"].rstrip("/") + "/") and not m.get("readOnly")
                          for m in ec.get("volumeMounts", [])),
                      f"{src}: local state_root {root} is not on a writable volume")

    # --- PodDisruptionBudget keeps a Raft quorum -------------------------------
    pdbs = [p for p in docs if p["kind"] == "PodDisruptionBudget"
            and selects(p["spec"]["selector"]["matchLabels"], dsts["spec"]["template"]["metadata"]["labels"])]
    quorum = n_drivers // 2 + 1
    if check(len(pdbs) == 1, f"{src}: expected one PodDisruptionBudget over the drivers, found {len(pdbs)}"):
        spec = pdbs[0]["spec"]
        if "minAvailable" in spec:
            check(spec["minAvailable"] == quorum,
                  f"{src}: driver PDB minAvailable {spec['minAvailable']} is not the quorum {quorum} of {n_drivers}")
        else:
            check(spec.get("maxUnavailable", n_drivers) <= n_drivers - quorum,
                  f"{src}: driver PDB maxUnavailable {spec.get('maxUnavailable')} can break the quorum {quorum}")

    check_certificates(docs, src, dsts, ests, ns)
    check_network_policies(docs, src, dsts, ests)
    monitoring.check_service_monitors(check, selects, tls_secrets, docs, src, dsts, ests, mode, monitor, ns)
    monitoring.check_dashboard_configmaps(check, docs, src, repo)


# ---------------------------------------------------------------------------
# Security: TLS flags, per-pod Secrets, tokens, certificates, NetworkPolicies

TLS_FLAGS = ("--tls-cert", "--tls-key", "--tls-ca")
TLS_FILES = {"--tls-cert": "tls.crt", "--tls-key": "tls.key", "--tls-ca": "ca.crt"}
ROLES = ("viewer", "operator", "admin")


def tls_secrets(pod: dict, volume_name: str) -> dict[str, str]:
    """Secret name -> directory, of a projected volume's secret sources whose
    items put tls.crt, tls.key and ca.crt in one directory."""
    vol = next((v for v in pod.get("volumes", []) if v["name"] == volume_name), None)
    out = {}
    for source in (vol or {}).get("projected", {}).get("sources", []):
        secret = source.get("secret")
        if not secret:
            continue
        items = {i["key"]: i["path"] for i in secret.get("items", [])}
        dirs = {p.rsplit("/", 1)[0] for p in items.values() if "/" in p}
        if set(items) == set(TLS_FILES.values()) and len(dirs) == 1 \
                and all(items[k] == f"{next(iter(dirs))}/{k}" for k in items):
            out[secret["name"]] = next(iter(dirs))
    return out


def check_security(docs: list[dict], src: str, mode: str, sts: dict, c: dict, tokens: list[str],
                   pod_var: str, n_pods: int, what: str) -> None:
    """TLS flags or --insecure on one workload, and where its files come from.

    `tokens` is the process's command line, `pod_var` how it spells its pod
    name (`${POD_NAME}` in the driver's shell, `$(POD_NAME)` in executor args)."""
    flags = set(flags_in(tokens))
    tls = [f for f in TLS_FLAGS if f in flags]
    insecure = "--insecure" in flags
    if mode == "insecure":
        check(insecure and not tls, f"{src}: {what} should run --insecure without TLS flags, has {sorted(flags)}")
        check("--tokens" not in flags, f"{src}: {what} gets --tokens without TLS (tokens over plaintext)")
        check(not any(e["name"].startswith("WEIR_TLS_") for e in c.get("env", [])),
              f"{src}: {what} sets WEIR_TLS_* without TLS (the process would refuse to start)")
        return
    if not check(len(tls) == 3 and not insecure,
                 f"{src}: {what} needs all of {', '.join(TLS_FLAGS)} and no --insecure, has {sorted(flags)} "
                 "(the process refuses to start otherwise)"):
        return
    name = sts["metadata"]["name"]
    pod = sts["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"].rstrip("/") for m in c.get("volumeMounts", [])}
    # Every file is <mount of a projected volume>/<pod name>/<file>, and the
    # volume has the Secret <sts>-<i>-tls in directory <sts>-<i> for every ordinal.
    for f in TLS_FLAGS:
        path = flag_value(tokens, f) or ""
        vol = next((v for v, m in mounts.items() if path.startswith(m + "/")), None)
        if not check(vol is not None, f"{src}: {what} {f} {path} is on no mounted volume"):
            continue
        check(path == f"{mounts[vol]}/{pod_var}/{TLS_FILES[f]}",
              f"{src}: {what} {f} is {path}, not {mounts[vol]}/{pod_var}/{TLS_FILES[f]} (its own pod's Secret)")
        secrets = tls_secrets(pod, vol)
        for i in range(n_pods):
            secret = f"{name}-{i}-tls"
            check(secrets.get(secret) == f"{name}-{i}",
                  f"{src}: {what} volume {vol} lacks Secret {secret} in directory {name}-{i} "
                  f"(pod {name}-{i} would find no certificate)")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    want_ca = (flag_value(tokens, "--tls-ca") or "").replace("${POD_NAME}", "$(POD_NAME)")
    check(env.get("WEIR_TLS_CA") == want_ca,
          f"{src}: {what} WEIR_TLS_CA (for `kubectl exec ... weir`) is {env.get('WEIR_TLS_CA')!r}, expected {want_ca!r}")
    path = flag_value(tokens, "--tokens")
    if not check(path is not None, f"{src}: {what} with TLS gets no --tokens ("
                 + ("no client could have a role)" if what == "driver" else "no one could read its /metrics)")):
        return
    vol = next((v for v, m in mounts.items() if path.startswith(m + "/")), None)
    volume = next((v for v in pod.get("volumes", []) if v["name"] == vol), {})
    secret = volume.get("secret", {})
    item = next((i for i in secret.get("items", []) if f"{mounts.get(vol)}/{i['path']}" == path), None)
    if not check(item is not None, f"{src}: {what} --tokens {path} is not an item of a mounted Secret volume"):
        return
    # Drivers and executors read one tokens file: a role is the same on every port.
    others = [d for d in docs if d["kind"] == "StatefulSet" and d is not sts]
    for other in others:
        theirs = {(v["secret"]["secretName"], i["key"]) for v in other["spec"]["template"]["spec"].get("volumes", [])
                  if "secret" in v for i in v["secret"].get("items", []) if i["path"] == "tokens.yaml"}
        check((secret["secretName"], item["key"]) in theirs,
              f"{src}: {what} reads tokens from {secret['secretName']}/{item['key']}, "
              f"{other['metadata']['name']} from {sorted(theirs)}")
    rendered = next((d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == secret["secretName"]), None)
    if rendered is None:
        return  # tokens.existingSecret: made outside the chart
    text = rendered.get("stringData", {}).get(item["key"])
    if not check(text is not None, f"{src}: Secret {secret['secretName']} has no stringData key {item['key']}"):
        return
    entries = yaml.safe_load(text) or []
    if not check(isinstance(entries, list), f"{src}: the tokens file is not a YAML list: {text!r}"):
        return
    names = [e.get("name") for e in entries]
    check(len(names) == len(set(names)), f"{src}: the tokens file names someone twice: {names}")
    for e in entries:
        check(isinstance(e, dict) and set(e) <= {"name", "role", "sha256"} and {"name", "role"} <= set(e)
              and re.fullmatch(r"[A-Za-z0-9._@-]{1,128}", str(e.get("name"))) is not None
              and e.get("role") in ROLES
              and ("sha256" not in e or re.fullmatch(r"[0-9a-f]{64}", str(e["sha256"])) is not None),
              f"{src}: tokens file entry {e!r} is not {{name, role, sha256}} as weir-driver reads it")


def check_certificates(docs: list[dict], src: str, dsts: dict, ests: dict, ns: str) -> None:
    """Each cert-manager Certificate of a pod names that pod's identity; a
    client certificate (Prometheus's) is one a ServiceMonitor presents."""
    certs = [d for d in docs if d["kind"] == "Certificate"]
    if not certs:
        return
    issuers = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in ("Issuer", "ClusterIssuer")}
    by_secret = {}
    for cert in certs:
        spec = cert["spec"]
        where = f"{src}: Certificate {cert['metadata']['name']}"
        ref = spec.get("issuerRef", {})
        check(bool(ref.get("name")), f"{where}: issuerRef has no name")
        if ref.get("kind", "Issuer") == "Issuer" and any(k == "Issuer" for k, _ in issuers):
            check(("Issuer", ref.get("name")) in issuers, f"{where}: issuerRef names Issuer {ref.get('name')}, "
                                                           f"which the chart does not render ({sorted(issuers)})")
        if spec.get("isCA"):
            continue
        by_secret[spec["secretName"]] = cert
        client = all(u.startswith("weir://client/") for u in spec.get("uris", [""]))
        usages = {"client auth", "digital signature"} | (set() if client else {"server auth"})
        check(set(spec.get("usages", [])) >= usages,
              f"{where}: usages {spec.get('usages')} lack one of {sorted(usages)}")
        pk = spec.get("privateKey", {})
        check(pk.get("algorithm") == "ECDSA" and pk.get("size") == 256 and pk.get("encoding") == "PKCS8"
              and pk.get("rotationPolicy") == "Always",
              f"{where}: privateKey {pk} is not ECDSA P-256, PKCS8, rotationPolicy Always")
    pods = {}
    for sts, kind in ((dsts, "driver"), (ests, "executor")):
        name = sts["metadata"]["name"]
        pod = sts["spec"]["template"]["spec"]
        used = {}
        for vol in pod.get("volumes", []):
            used.update(tls_secrets(pod, vol["name"]))
        for secret, directory in used.items():
            i = int(directory.rsplit("-", 1)[1])
            want_uri = f"weir://driver/{i + 1}" if kind == "driver" else f"weir://executor/{directory}"
            pods[secret] = directory
            cert = by_secret.get(secret)
            if not check(cert is not None, f"{src}: no Certificate writes Secret {secret}, which pod {directory} reads"):
                continue
            spec = cert["spec"]
            check(spec.get("uris") == [want_uri],
                  f"{src}: Certificate {cert['metadata']['name']} names {spec.get('uris')}, but pod {directory} "
                  f"is {want_uri} (the process refuses to start)")
            dns = set(spec.get("dnsNames", []))
            stable = f"{directory}.{sts['spec']['serviceName']}.{ns}.svc.cluster.local"
            check(stable in dns, f"{src}: Certificate {cert['metadata']['name']} lacks the pod's DNS name {stable} "
                                 f"(peers dial it), has {sorted(dns)}")
            if kind == "driver":
                client = [s for s in docs if s["kind"] == "Service"
                          and s["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "driver"
                          and s["spec"].get("clusterIP") != "None"]
                for svc in client:
                    full = f"{svc['metadata']['name']}.{ns}.svc.cluster.local"
                    check(full in dns, f"{src}: Certificate {cert['metadata']['name']} lacks the client Service "
                                       f"name {full}")
    presented = monitoring.client_cert_secrets(docs)
    for secret, cert in by_secret.items():
        check(secret in pods or secret in presented,
              f"{src}: Certificate {cert['metadata']['name']} writes Secret {secret}, which no pod reads and no "
              "ServiceMonitor presents")


def peer_selects(peer: dict, labels: dict) -> bool:
    """Whether a NetworkPolicy peer in the policy's own namespace admits pods with these labels."""
    if "ipBlock" in peer or "namespaceSelector" in peer:
        return False
    sel = peer.get("podSelector", {})
    if sel.get("matchExpressions"):
        return False
    return all(labels.get(k) == v for k, v in sel.get("matchLabels", {}).items())


def check_network_policies(docs: list[dict], src: str, dsts: dict, ests: dict) -> None:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    if not policies:
        return
    dlabels = dsts["spec"]["template"]["metadata"]["labels"]
    elabels = ests["spec"]["template"]["metadata"]["labels"]
    for sts, labels, what in ((dsts, dlabels, "driver"), (ests, elabels, "executor")):
        mine = [p for p in policies if selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)]
        if not check(len(mine) == 1, f"{src}: expected one NetworkPolicy over the {what}s, found {len(mine)}"):
            continue
        pol = mine[0]
        where = f"{src}: NetworkPolicy {pol['metadata']['name']}"
        check("Ingress" in pol["spec"].get("policyTypes", []), f"{where}: policyTypes lacks Ingress")
        c = sts["spec"]["template"]["spec"]["containers"][0]
        ports = {p["containerPort"]: p.get("name") for p in c.get("ports", [])}
        grpc = next(n for n, name in ports.items() if name == "grpc")
        rules = pol["spec"].get("ingress", [])
        for rule in rules:
            for p in rule.get("ports", []):
                check(p.get("port") in ports or p.get("port") in ports.values(),
                      f"{where}: admits port {p.get('port')}, not a container port of {sts['metadata']['name']}")
            check(bool(rule.get("ports")), f"{where}: a rule admits every port")
        grpc_rules = [r for r in rules if any(p.get("port") in (grpc, "grpc") for p in r.get("ports", []))]
        for peer_labels, peer in ((dlabels, "drivers"), (elabels, "executors")):
            check(any(peer_selects(x, peer_labels) for r in grpc_rules for x in r.get("from", [])),
                  f"{where}: does not admit {peer} to port {grpc}")
        if what == "executor":
            # Only drivers and executors reach an executor: tasks and shuffle.
            for r in grpc_rules:
                peers = r.get("from")
                check(bool(peers), f"{where}: admits anyone to the executor port")
                for x in peers or []:
                    check(peer_selects(x, dlabels) or peer_selects(x, elabels),
                          f"{where}: admits {x} to the executor port (only drivers and executors may)")
                    check(x.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                          in ("driver", "executor"),
                          f"{src}: NetworkPolicy {pol['metadata']['name']} admits {x}, which is not limited to "
                          "drivers or executors")
        http = next((n for n, name in ports.items() if name == "http"), None)
        check(http is not None and any(p.get("port") in (http, "http") for r in rules for p in r.get("ports", [])),
              f"{where}: does not admit the HTTP port {http} (Prometheus, the web UI)")


def chart_flags(tokens: list[str], pod_var: str, pod: str) -> list[str]:
    """The security and HTTP port flags of a command line, with the pod name filled in."""
    out = []
    for i, t in enumerate(tokens):
        if t == "--insecure":
            out.append(t)
        elif t in TLS_FLAGS + ("--tokens", "--http-listen") and i + 1 < len(tokens):
            out += [t, tokens[i + 1].replace(pod_var, pod)]
    return out


def write_settings(manifests: Path, prefix: str) -> None:
    """PREFIX.driver.yaml, PREFIX.executor.yaml and PREFIX.{driver,executor}.flags
    (one security or HTTP port flag or value a line, as the chart gives them
    to pod 0)."""
    docs = load_docs(manifests)
    cm = driver_config(docs)
    for key in ("driver.yaml", "executor.yaml"):
        Path(f"{prefix}.{key}").write_text(cm["data"][key])
    dsts, ests = find(docs, "StatefulSet", "driver"), find(docs, "StatefulSet", "executor")
    dc = dsts["spec"]["template"]["spec"]["containers"][0]
    script = dc["command"][2].replace("\\\n", " ")
    line = re.search(r"exec (weir-driver\b.*?)(?:\n\S|\Z)", script, re.S)
    dflags = chart_flags(shlex.split(line.group(1)) if line else [], "${POD_NAME}", f"{dsts['metadata']['name']}-0")
    ec = ests["spec"]["template"]["spec"]["containers"][0]
    eflags = chart_flags(ec.get("args", []), "$(POD_NAME)", f"{ests['metadata']['name']}-0")
    Path(f"{prefix}.driver.flags").write_text("".join(f + "\n" for f in dflags))
    Path(f"{prefix}.executor.flags").write_text("".join(f + "\n" for f in eflags))


def find(docs: list[dict], kind: str, component: str) -> dict:
    return next(d for d in docs if d["kind"] == kind
                and d["metadata"]["labels"].get("app.kubernetes.io/component") == component)


def driver_config(docs: list[dict]) -> dict:
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and "driver.yaml" in d.get("data", {}))
    return cm


def selftest(repo: Path, manifests: Path, n_drivers: int, n_executors: int, k8s_version: str, mode: str,
             monitor: str) -> None:
    """Breaks a good rendering in known ways; each must be caught."""

    def peers_minus_one(docs):
        cm = driver_config(docs)
        cfg = yaml.safe_load(cm["data"]["driver.yaml"])
        cfg["peers"].pop(max(cfg["peers"]))
        cm["data"]["driver.yaml"] = yaml.safe_dump(cfg)

    def unknown_file_key(docs):
        cm = driver_config(docs)
        cm["data"]["driver.yaml"] += "listen_on: 0.0.0.0:1\n"

    def port_mismatch(docs):
        find(docs, "StatefulSet", "driver")["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] += 1

    def executor_bad_flag(docs):
        find(docs, "StatefulSet", "executor")["spec"]["template"]["spec"]["containers"][0]["args"] += ["--no-such-flag", "x"]

    def driver_bad_flag(docs):
        find(docs, "StatefulSet", "driver")["spec"]["template"]["spec"]["containers"][0]["command"].append("--data_dir=/x")

    def weak_pdb(docs):
        pdb = find(docs, "PodDisruptionBudget", "driver")
        pdb["spec"]["minAvailable"] = n_drivers // 2

    def probe_on_other_port(docs):
        c = find(docs, "StatefulSet", "executor")["spec"]["template"]["spec"]["containers"][0]
        c["livenessProbe"] = {"grpc": {"port": 9999}}

    def schema_violation(docs):
        find(docs, "StatefulSet", "driver")["spec"]["template"]["spec"]["containers"][0]["bogusField"] = 1

    def data_dir_on_mount_root(docs):
        c = find(docs, "StatefulSet", "driver")["spec"]["template"]["spec"]["containers"][0]
        c["command"][2] = c["command"][2].replace("/var/lib/weir/driver", "/var/lib/weir")

    def writable_root(docs):
        c = find(docs, "StatefulSet", "executor")["spec"]["template"]["spec"]["containers"][0]
        c["securityContext"]["readOnlyRootFilesystem"] = False

    def executor_without_tls_key(docs):
        args = find(docs, "StatefulSet", "executor")["spec"]["template"]["spec"]["containers"][0]["args"]
        i = args.index("--tls-key")
        del args[i:i + 2]

    def driver_liveness_on_readyz(docs):
        c = find(docs, "StatefulSet", "driver")["spec"]["template"]["spec"]["containers"][0]
        c["livenessProbe"]["httpGet"]["path"] = "/readyz"

    def executor_tcp_readiness(docs):
        c = find(docs, "StatefulSet", "executor")["spec"]["template"]["spec"]["containers"][0]
        c["readinessProbe"]["tcpSocket"] = {"port": "grpc"}
        del c["readinessProbe"]["httpGet"]

    def driver_http_listen_elsewhere(docs):
        c = find(docs, "StatefulSet", "driver")["spec"]["template"]["spec"]["containers"][0]
        c["command"][2] = re.sub(r'--http-listen "0\.0\.0\.0:(\d+)"', '--http-listen "127.0.0.1:\\1"', c["command"][2])

    def executor_http_port_closed(docs):
        pol = find(docs, "NetworkPolicy", "executor")
        pol["spec"]["ingress"] = pol["spec"]["ingress"][:1]

    def executor_probe_plain_http_with_tls(docs):
        c = find(docs, "StatefulSet", "executor")["spec"]["template"]["spec"]["containers"][0]
        c["readinessProbe"]["httpGet"]["scheme"] = "HTTP"

    def executor_without_tokens(docs):
        args = find(docs, "StatefulSet", "executor")["spec"]["template"]["spec"]["containers"][0]["args"]
        i = args.index("--tokens")
        del args[i:i + 2]

    def unexpected_service_monitor(docs):
        docs.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                     "metadata": dict(find(docs, "Service", "driver")["metadata"], name="extra"),
                     "spec": {"selector": {"matchLabels": {}}, "endpoints": []}})

    def endpoint(docs, component):
        return find(docs, "ServiceMonitor", component)["spec"]["endpoints"][0]

    def service_monitor_without_honor_labels(docs):
        del endpoint(docs, "driver")["honorLabels"]

    def driver_scraped_twice(docs):
        headless = next(d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"
                        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "driver")
        headless["spec"]["ports"].append({"name": "http", "port": 1, "targetPort": "http"})

    def service_monitor_skips_verify(docs):
        endpoint(docs, "executor")["tlsConfig"]["insecureSkipVerify"] = True

    def executor_server_name_not_on_certificates(docs):
        endpoint(docs, "executor")["tlsConfig"]["serverName"] = "weir-executor.weir.svc"

    def prometheus_without_role(docs):
        secret = next(d for d in docs if d["kind"] == "Secret" and "tokens.yaml" in d.get("stringData", {}))
        entries = [e for e in yaml.safe_load(secret["stringData"]["tokens.yaml"]) or [] if e["name"] != "prometheus"]
        secret["stringData"]["tokens.yaml"] = yaml.safe_dump(entries)

    def service_monitor_over_http_with_tls(docs):
        ep = endpoint(docs, "driver")
        ep["scheme"] = "http"

    def certificate_names_ordinal(docs):
        # Replica id is ordinal + 1: a Certificate naming the ordinal is wrong.
        cert = next(d for d in docs if d["kind"] == "Certificate" and d["spec"].get("uris") == ["weir://driver/1"])
        cert["spec"]["uris"] = ["weir://driver/0"]

    def executor_open_to_namespace(docs):
        pol = find(docs, "NetworkPolicy", "executor")
        pol["spec"]["ingress"][0]["from"].append({"podSelector": {}})

    def last_executor_secret_missing(docs):
        pod = find(docs, "StatefulSet", "executor")["spec"]["template"]["spec"]
        vol = next(v for v in pod["volumes"] if "projected" in v)
        vol["projected"]["sources"].pop()

    def driver_uses_other_pods_cert(docs):
        c = find(docs, "StatefulSet", "driver")["spec"]["template"]["spec"]["containers"][0]
        c["command"][2] = c["command"][2].replace("${POD_NAME}/tls.key", "weir-driver-0/tls.key")

    cases = [peers_minus_one, unknown_file_key, port_mismatch, executor_bad_flag, driver_bad_flag,
             weak_pdb, probe_on_other_port, schema_violation, data_dir_on_mount_root, writable_root,
             driver_liveness_on_readyz, executor_tcp_readiness, driver_http_listen_elsewhere,
             executor_http_port_closed]
    if mode == "tls":
        cases += [executor_without_tls_key, certificate_names_ordinal, executor_open_to_namespace,
                  last_executor_secret_missing, driver_uses_other_pods_cert, executor_probe_plain_http_with_tls,
                  executor_without_tokens]
    if monitor == "none":
        cases += [unexpected_service_monitor]
    else:
        cases += [service_monitor_without_honor_labels, driver_scraped_twice]
    if monitor != "none" and mode == "tls":
        cases += [service_monitor_skips_verify, executor_server_name_not_on_certificates,
                  service_monitor_over_http_with_tls]
    if monitor == "certificate":
        cases += [prometheus_without_role]
    run_breakages("manifest", cases, lambda: load_docs(manifests),
                  lambda docs, name: check_rendered(repo, docs, f"selftest:{name}", n_drivers, n_executors,
                                                    k8s_version, mode, monitor))


def run_breakages(what: str, cases, load, run) -> None:
    """Applies each case to a fresh copy from load() and runs the checks on
    it with run(copy, case name); fails for every case they do not catch."""
    global FAILURES
    missed = []
    for case in cases:
        broken = load()
        case(broken)
        saved, FAILURES = FAILURES, []
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            run(broken, case.__name__)
        caught, FAILURES = FAILURES, saved
        label = "" if what == "manifest" else f"{what} "
        print(f"  selftest {label}{case.__name__}: {'caught: ' + caught[0] if caught else 'NOT CAUGHT'}")
        if not caught:
            missed.append(case.__name__)
    for name in missed:
        fail(f"selftest: the checks did not catch the broken {what} {name}")


def selftest_dashboard(repo: Path) -> None:
    """Breaks the dashboard in known ways; each must be caught."""
    path = repo / monitoring.DASHBOARD

    def targets(board):
        return [t for p in board["panels"] for t in p.get("targets", [])]

    def unknown_metric(board):
        targets(board)[0]["expr"] += " + weir_no_such_metric"

    def counter_without_rate(board):
        t = next(t for t in targets(board) if "weir_records_in_total" in t["expr"])
        t["expr"] = 'sum(weir_records_in_total{job=~"$job"})'

    def fixed_datasource(board):
        next(p for p in board["panels"] if p["type"] != "row")["datasource"] = {"type": "prometheus", "uid": "abc"}

    def job_variable_elsewhere(board):
        v = next(v for v in board["templating"]["list"] if v["name"] == "job")
        v["query"]["query"] = "label_values(weir_records_in_total, job)"

    def metric_not_shown(board):
        for t in targets(board):
            t["expr"] = t["expr"].replace("weir_shuffle_fetch_seconds", "weir_task_seconds")

    def query_does_not_parse(board):
        targets(board)[-1]["expr"] = targets(board)[-1]["expr"].rstrip(")")

    def panels_overlap(board):
        board["panels"][2]["gridPos"] = dict(board["panels"][1]["gridPos"])

    cases = (unknown_metric, counter_without_rate, fixed_datasource, job_variable_elsewhere,
             metric_not_shown, panels_overlap, query_does_not_parse)
    run_breakages("dashboard", cases, lambda: json.loads(path.read_text()),
                  lambda board, _: monitoring.check_board(check, repo, path, board))


MONITORS = ("none", "plain", "certificate", "token")


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[1] == "dockerfile":
        check_dockerfile(Path(argv[2]), Path(argv[3]))
    elif len(argv) == 3 and argv[1] == "dashboard":
        monitoring.check_dashboard(check, Path(argv[2]))
        selftest_dashboard(Path(argv[2]))
    elif len(argv) == 9 and argv[1] in ("rendered", "selftest") and argv[7] in ("tls", "insecure") \
            and argv[8] in MONITORS:
        repo, manifests, drivers, executors, k8s = Path(argv[2]), Path(argv[3]), int(argv[4]), int(argv[5]), argv[6]
        mode, monitor = argv[7], argv[8]
        if argv[1] == "rendered":
            check_rendered(repo, load_docs(manifests), str(manifests), drivers, executors, k8s, mode, monitor)
        else:
            selftest(repo, manifests, drivers, executors, k8s, mode, monitor)
    elif len(argv) == 4 and argv[1] == "settings":
        write_settings(Path(argv[2]), argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
