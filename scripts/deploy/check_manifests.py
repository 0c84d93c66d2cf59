#!/usr/bin/env python3
"""Checks the deployment doors without a cluster or a Docker engine.

Usage: check_manifests.py CHECK [args]   (scripts/deploy/test.sh runs them all)

  kustomize DIR            `kubectl kustomize DIR` builds
  crd OVERLAY              every custom resource validates against its vendored
                           CRD's openAPIV3Schema (+ the CEL rules that matter)
  core OVERLAY             every core resource validates against the Kubernetes
                           OpenAPI schema (kubernetes-validate, strict, v1.30)
                           and its references resolve inside the build
  plugin-config OVERLAY    the filter document in the built manifests equals
                           envoy/tollgate.json + the overlay's
                           plugin-config.override.json (per-door fields only);
                           its secret_env names reach the VM; authority.cluster
                           and authority.host agree with the authority Service
                           (Istio: outbound|<port>||<host>) / the cluster the
                           EnvoyPatchPolicy adds (Envoy Gateway)
  render-envoy OVERLAY OUT envoy/envoy.yaml with the manifest's document as the
                           filter configuration (and, for envoy-gateway, the
                           patch policy's cluster added), for `envoy --mode validate`
  envoy-yaml               the document embedded in envoy/envoy.yaml equals
                           envoy/tollgate.json, its authority.cluster is a
                           cluster of envoy.yaml, use_remote_address is on
  compose                  structural checks of envoy/docker-compose.yml,
                           authority/Dockerfile and .dockerignore

Exit 0 when the check passes, 1 (with the reasons on stderr) when it fails.
"""
import copy
import fnmatch
import importlib.util
import json
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "envoy" / "k8s"
CRDS = ROOT / "envoy" / "crds"
DOC_PATH = ROOT / "envoy" / "tollgate.json"
ENVOY_YAML = ROOT / "envoy" / "envoy.yaml"
K8S_VERSION = "1.30"  # the oldest Kubernetes the manifests support (preStop sleep)

CORE_KINDS = {
    ("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"),
    ("apps/v1", "Deployment"), ("policy/v1", "PodDisruptionBudget"),
}

errors = []

# envoy/tollgate.json + an overlay's override = the overlay's document: the
# one implementation, shared with the script that writes the patches.
_spec = importlib.util.spec_from_file_location(
    "sync_plugin_config", pathlib.Path(__file__).with_name("sync-plugin-config.py"))
SYNC = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(SYNC)


def fail(msg):
    errors.append(msg)


def build(overlay):
    path = K8S / overlay if not pathlib.Path(overlay).is_absolute() else pathlib.Path(overlay)
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise SystemExit(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def name_of(r):
    return f"{r['kind']}/{r['metadata'].get('namespace', '-')}/{r['metadata']['name']}"


def tollgate_doc():
    return json.loads(DOC_PATH.read_text())


# ---- CRD schemas -----------------------------------------------------------

def load_crds():
    crds = {}
    for f in sorted(CRDS.rglob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if not d or d.get("kind") != "CustomResourceDefinition":
                continue
            group = d["spec"]["group"]
            kind = d["spec"]["names"]["kind"]
            for v in d["spec"]["versions"]:
                crds[(f"{group}/{v['name']}", kind)] = (v, d["spec"]["scope"], f)
    return crds


def to_jsonschema(s):
    """OpenAPI v3 (Kubernetes structural schema) -> JSON Schema for jsonschema."""
    if isinstance(s, list):
        return [to_jsonschema(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {}
    for k, v in s.items():
        if k.startswith("x-kubernetes-") or k in ("description", "example", "externalDocs"):
            continue
        if k in ("properties", "patternProperties"):
            out[k] = {pk: to_jsonschema(pv) for pk, pv in v.items()}
        elif k == "format" and v in ("int32", "int64", "date-time", "byte", "duration"):
            continue  # informational in k8s validation here
        else:
            out[k] = to_jsonschema(v)
    if s.get("nullable"):
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        out.pop("nullable", None)
    if s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    # Kubernetes prunes unknown fields; a manifest relying on that is a bug.
    if s.get("type") == "object" and "properties" in s and not s.get(
            "x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in s:
        out["additionalProperties"] = False
    return out


def cel_checks(r):
    """The CEL rules (x-kubernetes-validations) of our kinds that jsonschema
    cannot run, re-stated by hand."""
    spec = r.get("spec", {})
    kind = r["kind"]
    if kind == "WasmPlugin":
        n = sum(1 for k in ("selector", "targetRef", "targetRefs") if k in spec)
        if n > 1:
            fail(f"{name_of(r)}: only one of targetRefs or selector can be set")
        for e in spec.get("vmConfig", {}).get("env", []):
            if e.get("valueFrom") == "HOST" and "value" in e:
                fail(f"{name_of(r)}: env {e['name']}: value may only be set when valueFrom is INLINE")
        if not re.match(r"^(oci|https?|file)://", spec.get("url", "")):
            fail(f"{name_of(r)}: url must have a scheme among oci, http, https, file")
        for t in spec.get("targetRefs", []):
            if t.get("namespace"):
                fail(f"{name_of(r)}: cross namespace targetRefs are not supported")
    if kind == "EnvoyExtensionPolicy":
        for i, w in enumerate(spec.get("wasm", [])):
            code = w["code"]
            for t, field in (("HTTP", "http"), ("Image", "image")):
                if (code["type"] == t) != (field in code):
                    fail(f"{name_of(r)}: wasm[{i}].code: type {code['type']} and field {field} disagree")
    if kind == "EnvoyPatchPolicy":
        for i, p in enumerate(spec.get("jsonPatches", [])):
            op = p["operation"]
            if "path" not in op and "jsonPath" not in op:
                fail(f"{name_of(r)}: jsonPatches[{i}]: Envoy Gateway requires path or jsonPath "
                     "(use path: \"\" to add a new resource)")
            if op["op"] in ("add", "replace", "test") and "value" not in op:
                fail(f"{name_of(r)}: jsonPatches[{i}]: {op['op']} needs a value")


def check_crd(overlay):
    import jsonschema
    crds = load_crds()
    checked = 0
    for r in build(overlay):
        key = (r["apiVersion"], r["kind"])
        if key in CORE_KINDS:
            continue
        if key not in crds:
            fail(f"{name_of(r)}: no vendored CRD for {key[0]} {key[1]} in envoy/crds/")
            continue
        version, scope, f = crds[key]
        if not version.get("served", False):
            fail(f"{name_of(r)}: {key[0]} is not served by {f.relative_to(ROOT)}")
        if scope == "Cluster" and r["metadata"].get("namespace"):
            fail(f"{name_of(r)}: cluster-scoped kind carries a namespace")
        schema = to_jsonschema(version["schema"]["openAPIV3Schema"])
        # The API server accepts these at the root of every object, whether
        # or not the CRD's schema lists them (Istio's does not).
        schema.setdefault("properties", {}).update(
            apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"})
        v = jsonschema.Draft7Validator(schema)
        for e in sorted(v.iter_errors(r), key=lambda e: list(e.absolute_path)):
            path = "/".join(str(p) for p in e.absolute_path)
            fail(f"{name_of(r)}: {path}: {e.message[:300]}")
        cel_checks(r)
        checked += 1
    if checked == 0:
        fail(f"{overlay}: no custom resources found")
    return checked


# ---- core kinds ---------------------------------------------------------------

def check_core(overlay):
    import kubernetes_validate
    res = build(overlay)
    by_kind = {}
    for r in res:
        by_kind.setdefault(r["kind"], {})[r["metadata"]["name"]] = r
        if (r["apiVersion"], r["kind"]) not in CORE_KINDS:
            continue
        try:
            kubernetes_validate.validate(r, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{name_of(r)}: {'/'.join(str(p) for p in e.path)}: {e.message[:300]}")
    cms = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    deployments = by_kind.get("Deployment", {})
    for name, d in deployments.items():
        sel = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in sel.items()):
            fail(f"Deployment {name}: selector {sel} does not match template labels {labels}")
        pod = d["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if not psc.get("runAsNonRoot"):
            fail(f"Deployment {name}: pod securityContext.runAsNonRoot is not true")
        for c in pod["containers"]:
            csc = c.get("securityContext", {})
            if csc.get("allowPrivilegeEscalation") is not False or not csc.get("readOnlyRootFilesystem"):
                fail(f"Deployment {name}/{c['name']}: must drop privilege escalation and use a read-only root")
            if "readinessProbe" not in c:
                fail(f"Deployment {name}/{c['name']}: no readinessProbe")
            ports = {p.get("name") for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                p = c.get(probe, {})
                port = p.get("httpGet", p.get("tcpSocket", {})).get("port")
                if isinstance(port, str) and port not in ports:
                    fail(f"Deployment {name}/{c['name']}: {probe} port {port} is not a container port")
            for ef in c.get("envFrom", []):
                ref = ef.get("configMapRef", {}).get("name") or ef.get("secretRef", {}).get("name")
                if ref not in cms and ref not in secrets:
                    fail(f"Deployment {name}/{c['name']}: envFrom {ref} is not in the build")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    s = secrets.get(ref["name"])
                    if not s or ref["key"] not in (s.get("data", {}) | s.get("stringData", {})):
                        fail(f"Deployment {name}/{c['name']}: env {e['name']}: secret {ref['name']} key {ref['key']} not in the build")
    auth = deployments.get("tollgate-authority")
    if not auth:
        fail("no Deployment tollgate-authority")
    else:
        c = auth["spec"]["template"]["spec"]["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if c.get(probe, {}).get("httpGet", {}).get("path") != "/healthz":
                fail(f"tollgate-authority: {probe} is not an HTTP probe of /healthz")
        if auth["spec"]["replicas"] < 2:
            fail("tollgate-authority: fewer than 2 replicas")
        env_names = set()
        for ef in c.get("envFrom", []):
            cm = cms.get(ef.get("configMapRef", {}).get("name"))
            if cm:
                env_names |= set(cm.get("data", {}))
        env_names |= {e["name"] for e in c.get("env", [])}
        check_authority_env(env_names, "Deployment tollgate-authority")
        if "TOLLGATE_REDIS_URL" in env_names and not any(
                e["name"] == "TOLLGATE_REDIS_URL" and "secretKeyRef" in e.get("valueFrom", {})
                for e in c.get("env", [])):
            fail("tollgate-authority: TOLLGATE_REDIS_URL must come from a Secret")
    for name, svc in by_kind.get("Service", {}).items():
        sel = svc["spec"].get("selector", {})
        targets = [d for d in deployments.values()
                   if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        if not targets:
            fail(f"Service {name}: selector {sel} matches no Deployment in the build")
        for p in svc["spec"]["ports"]:
            tp = p.get("targetPort")
            if isinstance(tp, str) and not any(
                    tp in {cp.get("name") for c in d["spec"]["template"]["spec"]["containers"]
                           for cp in c.get("ports", [])} for d in targets):
                fail(f"Service {name}: targetPort {tp} is no named container port")
    pdbs = by_kind.get("PodDisruptionBudget", {})
    if not pdbs:
        fail("no PodDisruptionBudget")
    for name, pdb in pdbs.items():
        sel = pdb["spec"]["selector"]["matchLabels"]
        if not any(all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
                   for d in deployments.values()):
            fail(f"PodDisruptionBudget {name}: selects no Deployment")


def authority_env_vars():
    src = (ROOT / "authority" / "src" / "config.rs")
    if not src.exists():
        return None
    return set(re.findall(r'"(TOLLGATE_[A-Z0-9_]+)"', src.read_text()))


def check_authority_env(names, where):
    """Every TOLLGATE_* setting we pass must be one the authority reads
    (authority/src/config.rs), except key secrets named by secret_env."""
    known = authority_env_vars()
    if known is None:
        fail("authority/src/config.rs not found: cannot check the authority's environment names")
        return
    for n in sorted(names):
        if n.startswith("TOLLGATE_") and n not in known:
            fail(f"{where}: {n} is not a setting authority/src/config.rs reads")


# ---- the filter document ---------------------------------------------------

def plugin_docs(resources):
    """(resource, document, env names reaching the VM) for each filter instance."""
    out = []
    for r in resources:
        if r["kind"] == "WasmPlugin":
            env = {e["name"] for e in r["spec"].get("vmConfig", {}).get("env", [])}
            out.append((r, r["spec"].get("pluginConfig"), env))
        elif r["kind"] == "EnvoyExtensionPolicy":
            for w in r["spec"].get("wasm", []):
                out.append((r, w.get("config"), set(w.get("env", {}).get("hostKeys", []))))
    return out


def overlay_name(overlay):
    name = pathlib.Path(overlay).name
    if name not in SYNC.TARGETS:
        raise SystemExit(f"{overlay}: not an overlay of scripts/deploy/sync-plugin-config.py "
                         f"({', '.join(SYNC.TARGETS)})")
    return name


def authority_service(services, deployments):
    """The Services of the build that select the authority Deployment."""
    auth = deployments.get("tollgate-authority")
    if not auth:
        return {}
    labels = auth["spec"]["template"]["metadata"]["labels"]
    return {k: s for k, s in services.items()
            if s["spec"].get("selector") and all(labels.get(a) == b for a, b in s["spec"]["selector"].items())}


def check_plugin_config(overlay):
    res = build(overlay)
    name = overlay_name(overlay)
    try:
        want = SYNC.expected_document(name)
    except SYNC.OverrideError as e:
        fail(str(e))
        return
    docs = plugin_docs(res)
    if not docs:
        fail(f"{overlay}: no WasmPlugin or EnvoyExtensionPolicy carrying the filter")
    services = {(r["metadata"]["name"], r["metadata"].get("namespace")): r
                for r in res if r["kind"] == "Service"}
    deployments = {r["metadata"]["name"]: r for r in res if r["kind"] == "Deployment"}
    auth_services = authority_service(services, deployments)
    for r, doc, env in docs:
        if doc != want:
            fail(f"{name_of(r)}: the filter document differs from envoy/tollgate.json + "
                 f"{name}/{SYNC.OVERRIDE} (run scripts/deploy/sync-plugin-config.py)")
            continue
        if "tollgate.dev/authority-cluster" in r["metadata"].get("annotations", {}):
            fail(f"{name_of(r)}: the tollgate.dev/authority-cluster annotation is obsolete: the "
                 f"document's authority.cluster is the one place ({name}/{SYNC.OVERRIDE})")
        for i, k in enumerate(doc.get("keys", [])):
            if "secret" in k:
                fail(f"{name_of(r)}: keys[{i}] carries its secret inline")
            if "secret_env" in k and k["secret_env"] not in env:
                fail(f"{name_of(r)}: keys[{i}].secret_env {k['secret_env']} is not passed to the VM")
        authority = doc.get("authority")
        if not authority:
            if any(doc.get(s) for s in ("revocation", "refresh")):
                fail(f"{name_of(r)}: revocation/refresh without an authority section")
            continue
        cluster, host = authority["cluster"], authority.get("host")
        if r["kind"] == "WasmPlugin":
            # Istio's cluster for a Service port: outbound|<port>||<svc>.<ns>.svc.cluster.local
            m = re.fullmatch(r"outbound\|(\d+)\|\|(([^.|]+)\.([^.|]+)\.svc\.cluster\.local)", cluster)
            svc = m and services.get((m.group(3), m.group(4)))
            if not svc:
                fail(f"{name_of(r)}: authority.cluster {cluster!r} names no Service of the build "
                     "in Istio's outbound|<port>||<svc>.<ns>.svc.cluster.local form")
                continue
            if (m.group(3), m.group(4)) not in auth_services:
                fail(f"{name_of(r)}: authority.cluster {cluster!r}: Service {m.group(3)} does not "
                     "select the tollgate-authority Deployment")
            if int(m.group(1)) not in [p["port"] for p in svc["spec"]["ports"]]:
                fail(f"{name_of(r)}: authority.cluster {cluster!r}: the Service has no port {m.group(1)}")
            if host != m.group(2):
                fail(f"{name_of(r)}: authority.host {host!r} is not the Service's host {m.group(2)!r}")
        else:
            pols = {c["name"]: (pol, c) for pol, c in patch_clusters(res, with_policy=True)}
            if cluster not in pols:
                fail(f"{name_of(r)}: authority.cluster {cluster!r} is added by no EnvoyPatchPolicy "
                     f"(it adds {sorted(pols) or 'none'})")
                continue
            pol, c = pols[cluster]
            if pol["spec"].get("targetRef", {}).get("name") not in [
                    t.get("name") for t in r["spec"].get("targetRefs", [])]:
                fail(f"{name_of(pol)} adds {cluster!r} to a Gateway the {name_of(r)} is not on")
            if c.get("load_assignment", {}).get("cluster_name") != cluster:
                fail(f"{name_of(pol)}: cluster {cluster!r}: load_assignment.cluster_name differs")
            addrs = set()
            for lb in c["load_assignment"]["endpoints"][0]["lb_endpoints"]:
                sa = lb["endpoint"]["address"]["socket_address"]
                addrs.add(sa["address"])
                m = re.fullmatch(r"([^.]+)\.([^.]+)\.svc\.cluster\.local", sa["address"])
                svc = m and services.get((m.group(1), m.group(2)))
                if not svc or sa["port_value"] not in [p["port"] for p in svc["spec"]["ports"]]:
                    fail(f"EnvoyPatchPolicy cluster {cluster}: {sa['address']}:{sa['port_value']} "
                         "is no Service port of the build")
                elif (m.group(1), m.group(2)) not in auth_services:
                    fail(f"EnvoyPatchPolicy cluster {cluster}: Service {m.group(1)} does not "
                         "select the tollgate-authority Deployment")
            if addrs != {host}:
                fail(f"{name_of(r)}: authority.host {host!r} is not the host of cluster "
                     f"{cluster!r} ({', '.join(sorted(addrs))})")


def patch_clusters(resources, with_policy=False):
    """The clusters EnvoyPatchPolicies add (with their policy, if asked)."""
    out = []
    for r in resources:
        if r["kind"] != "EnvoyPatchPolicy":
            continue
        for p in r["spec"]["jsonPatches"]:
            if (p["type"].endswith("envoy.config.cluster.v3.Cluster") and p["operation"]["op"] == "add"
                    and p["operation"].get("path", "") == ""):
                v = p["operation"]["value"]
                if p.get("name") != v.get("name"):
                    fail(f"{name_of(r)}: jsonPatches name {p.get('name')!r} != cluster name {v.get('name')!r}")
                out.append((r, v) if with_policy else v)
    return out


def envoy_filter_config(cfg):
    for l in cfg["static_resources"]["listeners"]:
        for fc in l["filter_chains"]:
            for f in fc["filters"]:
                for hf in f["typed_config"].get("http_filters", []):
                    if hf["name"] == "tollgate":
                        return hf["typed_config"]["config"]
    raise SystemExit("envoy/envoy.yaml: no http filter named tollgate")


def render_envoy(overlay, out):
    res = build(overlay)
    cfg = yaml.safe_load(ENVOY_YAML.read_text())
    docs = plugin_docs(res)
    if not docs:
        raise SystemExit(f"{overlay}: no filter document")
    _, doc, _ = docs[0]
    envoy_filter_config(cfg)["configuration"]["value"] = json.dumps(doc, indent=2)
    for c in patch_clusters(res):
        c = copy.deepcopy(c)
        # Envoy resolves STRICT_DNS names at run time, not in --mode validate;
        # the cluster definition itself (fields, types, thresholds) is checked.
        cfg["static_resources"]["clusters"].append(c)
    pathlib.Path(out).write_text(yaml.safe_dump(cfg, sort_keys=False))


def check_envoy_yaml():
    cfg = yaml.safe_load(ENVOY_YAML.read_text())
    value = envoy_filter_config(cfg)["configuration"]["value"]
    doc = tollgate_doc()
    if json.loads(value) != doc:
        fail("envoy/envoy.yaml: the filter configuration differs from envoy/tollgate.json")
    # The native and compose doors use the document unchanged: its authority
    # cluster must be one of envoy.yaml's own clusters.
    cluster = doc.get("authority", {}).get("cluster")
    names = [c["name"] for c in cfg["static_resources"]["clusters"]]
    if cluster is not None and cluster not in names:
        fail(f"envoy/tollgate.json: authority.cluster {cluster!r} is no cluster of envoy/envoy.yaml ({names})")
    for l in cfg["static_resources"]["listeners"]:
        for fc in l["filter_chains"]:
            for f in fc["filters"]:
                tc = f["typed_config"]
                if "http_filters" in tc and tc.get("use_remote_address") is not True:
                    fail(f"envoy/envoy.yaml listener {l['name']}: use_remote_address is not true "
                         "(source.address, what `hosts` is checked against, would follow X-Forwarded-For)")


# ---- compose, Dockerfile ----------------------------------------------------

def dockerfile_stages(text):
    stages = {}
    cur = None
    for line in text.splitlines():
        m = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            cur = m.group(2) or f"#{len(stages)}"
            stages[cur] = []
        elif cur:
            stages[cur].append(line)
    return stages


def workspace_bins():
    bins = set()
    for manifest in [ROOT / "Cargo.toml"] + [ROOT / m / "Cargo.toml" for m in workspace_members()]:
        text = manifest.read_text()
        bins |= set(re.findall(r'\[\[bin\]\]\s*\nname\s*=\s*"([^"]+)"', text))
        bindir = manifest.parent / "src" / "bin"
        if bindir.is_dir():
            bins |= {p.stem for p in bindir.glob("*.rs")}
            bins |= {p.name for p in bindir.iterdir() if p.is_dir()}
    return bins


def workspace_members():
    text = (ROOT / "Cargo.toml").read_text()
    m = re.search(r"members\s*=\s*\[([^\]]*)\]", text)
    return [x for x in re.findall(r'"([^"]+)"', m.group(1)) if x != "."]


def check_compose():
    compose = yaml.safe_load((ROOT / "envoy" / "docker-compose.yml").read_text())
    envoy_cfg = yaml.safe_load(ENVOY_YAML.read_text())
    svcs = compose["services"]
    deps = (ROOT / "scripts" / "deps.sh").read_text()
    ver = re.search(r"ENVOY_VERSION=(\S+)", deps).group(1)
    env = svcs["envoy"]
    if env["image"] != f"envoyproxy/envoy:v{ver}":
        fail(f"compose envoy image {env['image']} is not the tested envoyproxy/envoy:v{ver} (scripts/deps.sh)")
    wd = env["working_dir"]
    module = envoy_filter_config(envoy_cfg)["vm_config"]["code"]["local"]["filename"]
    mounts = {}
    for v in env["volumes"]:
        src, dst = v.split(":")[:2]
        mounts[dst] = src
    if mounts.get(f"{wd}/envoy/envoy.yaml") != "./envoy.yaml":
        fail("compose envoy does not mount envoy/envoy.yaml at <working_dir>/envoy/envoy.yaml")
    if mounts.get(f"{wd}/{module}") != f"../{module}":
        fail(f"compose envoy does not mount the build's {module} at <working_dir>/{module}")
    cmd = " ".join(env["command"])
    if "compose-envoy.sh envoy/envoy.yaml" not in cmd:
        fail("compose envoy is not started from envoy/envoy.yaml through compose-envoy.sh")
    for script in re.findall(r"(scripts/\S+\.sh)", cmd):
        if mounts.get(f"{wd}/{script}") != f"../{script}":
            fail(f"compose envoy runs {script} but does not mount it")
    listeners = {l["name"]: l["address"]["socket_address"] for l in envoy_cfg["static_resources"]["listeners"]}
    port = listeners["ingress"]["port_value"]
    if not any(str(p).endswith(f":{port}:{port}") or str(p).endswith(f":{port}") for p in env.get("ports", [])):
        fail(f"compose envoy does not publish the ingress port {port}")
    clusters = {c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                for c in envoy_cfg["static_resources"]["clusters"]}
    authority_cluster = tollgate_doc().get("authority", {}).get("cluster", "authority")
    for svc, cluster in (("authority", authority_cluster), ("upstream", "upstream")):
        s = svcs.get(svc)
        if not s:
            fail(f"compose has no {svc} service")
            continue
        if s.get("network_mode") != "service:envoy":
            fail(f"compose {svc}: network_mode must be service:envoy (envoy.yaml reaches it on 127.0.0.1)")
        if cluster not in clusters:
            fail(f"compose {svc}: envoy.yaml has no cluster {cluster!r}")
            continue
        want = f"{clusters[cluster]['address']}:{clusters[cluster]['port_value']}"
        if svc == "authority":
            have = s.get("environment", {}).get("TOLLGATE_LISTEN")
            check_authority_env(set(s.get("environment", {})), "compose authority")
        else:
            c = s.get("command", [])
            have = c[c.index("--listen") + 1] if "--listen" in c else None
        if have != want:
            fail(f"compose {svc} listens on {have}, envoy.yaml's cluster {cluster} expects {want}")
        b = s.get("build", {})
        if b.get("dockerfile") != "authority/Dockerfile" or b.get("context") != "..":
            fail(f"compose {svc}: not built from authority/Dockerfile with the workspace as context")
    if "redis" not in svcs or "redis://redis:" not in svcs["authority"]["environment"].get("TOLLGATE_REDIS_URL", ""):
        fail("compose: the authority does not use the redis service")
    if svcs["authority"]["environment"].get("TOLLGATE_STORE") != "redis":
        fail("compose: the authority's store is not redis")
    key_env = {k["secret_env"] for k in tollgate_doc()["keys"] if "secret_env" in k}
    for k in key_env:
        if k not in env.get("environment", {}):
            fail(f"compose envoy: {k} (secret_env of envoy/tollgate.json) not in its environment")

    # Dockerfile
    text = (ROOT / "authority" / "Dockerfile").read_text()
    stages = dockerfile_stages(text)
    for svc in ("authority", "upstream"):
        t = svcs[svc]["build"].get("target")
        if t not in stages:
            fail(f"compose {svc}: build target {t} is no stage of authority/Dockerfile")
    final = list(stages)[-1]
    for name, lines in stages.items():
        if name == "build":
            continue
        users = [l.split()[1] for l in lines if l.strip().upper().startswith("USER ")]
        if not users or users[-1].split(":")[0] in ("0", "root"):
            fail(f"authority/Dockerfile stage {name}: does not end as a non-root USER")
    if final != "authority":
        fail("authority/Dockerfile: the default (last) stage must be the authority")
    bins = workspace_bins()
    for b in re.findall(r"--bin\s+(\S+)", text):
        if b not in bins:
            fail(f"authority/Dockerfile builds --bin {b}, which no workspace member defines ({sorted(bins)})")
    # .dockerignore must not hide what the build needs.
    ignored = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
               if l.strip() and not l.startswith("#")]
    needed = ["Cargo.toml", "Cargo.lock", "src/lib.rs"] + [f"{m}/Cargo.toml" for m in workspace_members()]
    for n in needed:
        for pat in ignored:
            if fnmatch.fnmatch(n, pat) or n.startswith(pat.rstrip("/") + "/"):
                fail(f".dockerignore pattern {pat!r} hides {n}, which the image build needs")
    for src in list(ROOT.glob("src/**/*.rs")) + list(ROOT.glob("authority/src/**/*.rs")):
        for inc in re.findall(r'include_(?:str|bytes)!\("([^"]+)"\)', src.read_text()):
            rel = (src.parent / inc).resolve().relative_to(ROOT).as_posix()
            for pat in ignored:
                if fnmatch.fnmatch(rel, pat) or rel.startswith(pat.rstrip("/") + "/"):
                    fail(f".dockerignore pattern {pat!r} hides {rel}, included by {src.relative_to(ROOT)}")


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "kustomize":
        build(args[0])
    elif cmd == "crd":
        n = check_crd(args[0])
        print(f"{args[0]}: {n} custom resources checked")
    elif cmd == "core":
        check_core(args[0])
    elif cmd == "plugin-config":
        check_plugin_config(args[0])
    elif cmd == "render-envoy":
        render_envoy(args[0], args[1])
    elif cmd == "envoy-yaml":
        check_envoy_yaml()
    elif cmd == "compose":
        check_compose()
    else:
        print(f"unknown check {cmd}", file=sys.stderr)
        return 2
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
