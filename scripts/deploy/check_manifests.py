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
  request-semantics DOOR   the HTTP connection manager in front of the filter
                           normalizes paths, merges slashes, rejects escaped
                           slashes and header names with `_` (DOOR: native,
                           compose, istio, envoy-gateway; REQUEST_SEMANTICS)
  credentials DOOR         the document reads its edge credential from the
                           VM's environment, and the door puts it (and the
                           HMAC keys) there; in Kubernetes from the same
                           Secret keys the authority reads
  secrets DIR              no demo secret or demo user in the build; the
                           authority reads its key, edge credential and users
                           file from Secrets the user creates, each documented
                           in docs/deploy.md with its kubectl command
  network-policy DIR       NetworkPolicies admit only the door's gateway pods
                           to the authority's port, and only the authority to
                           Redis's

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
    ("networking.k8s.io/v1", "NetworkPolicy"),
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
    if kind == "EnvoyFilter":
        if "workloadSelector" in spec and "targetRefs" in spec:
            fail(f"{name_of(r)}: only one of targetRefs or workloadSelector can be set")
        for t in spec.get("targetRefs", []):
            if t.get("namespace"):
                fail(f"{name_of(r)}: cross namespace referencing is not currently supported")
        for i, p in enumerate(spec.get("configPatches", [])):
            m = p.get("match", {})
            if ("waypoint" in m) != (m.get("context") == "WAYPOINT"):
                fail(f"{name_of(r)}: configPatches[{i}]: only support waypointMatch when context is WAYPOINT")
    if kind == "ClientTrafficPolicy":
        has_ref, has_refs = "targetRef" in spec, "targetRefs" in spec
        if not ((has_ref != has_refs) or spec.get("targetSelectors")):
            fail(f"{name_of(r)}: either targetRef or targetRefs must be used")
        for t in ([spec["targetRef"]] if has_ref else []) + spec.get("targetRefs", []):
            if t.get("group") != "gateway.networking.k8s.io" or t.get("kind") not in ("Gateway", "ListenerSet"):
                fail(f"{name_of(r)}: targets must be Gateway or ListenerSet of gateway.networking.k8s.io")
        h = spec.get("headers", {})
        if "preserveXRequestID" in h and "requestID" in h:
            fail(f"{name_of(r)}: preserveXRequestID and requestID cannot both be set.")
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
        if key == ("monitoring.coreos.com/v1", "PrometheusRule"):
            check_prometheus_rule(r)
            checked += 1
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


def check_prometheus_rule(r):
    """The PrometheusRule (no vendored CRD: prometheus-operator's is not in
    envoy/crds/) carries exactly the groups of deploy/monitoring/tollgate.rules.yml,
    which promtool checks and unit-tests, and promtool accepts its spec."""
    import tempfile
    rules = yaml.safe_load((ROOT / "deploy/monitoring/tollgate.rules.yml").read_text())
    if set(r) - {"apiVersion", "kind", "metadata", "spec"} or set(r["spec"]) != {"groups"}:
        fail(f"{name_of(r)}: only spec.groups is expected")
    if r["spec"].get("groups") != rules["groups"]:
        fail(f"{name_of(r)}: spec.groups differ from deploy/monitoring/tollgate.rules.yml "
             "(run scripts/deploy/sync-monitoring.py)")
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump({"groups": r["spec"].get("groups", [])}, f)
        f.flush()
        p = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            fail(f"{name_of(r)}: promtool check rules: {(p.stdout + p.stderr)[-500:]}")


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
                # A Secret the build does not carry is one the user creates
                # (the `secrets` check: documented, and not a demo value).
                if ref and ref["name"] in secrets:
                    s = secrets[ref["name"]]
                    if ref["key"] not in (s.get("data", {}) | s.get("stringData", {})):
                        fail(f"Deployment {name}/{c['name']}: env {e['name']}: secret {ref['name']} has no key {ref['key']}")
            vols = {v["name"]: v for v in pod.get("volumes", [])}
            for m in c.get("volumeMounts", []):
                if m["name"] not in vols:
                    fail(f"Deployment {name}/{c['name']}: volumeMount {m['name']} names no volume")
    auth = deployments.get("tollgate-authority")
    if not auth:
        fail("no Deployment tollgate-authority")
    else:
        c = auth["spec"]["template"]["spec"]["containers"][0]
        # Liveness never depends on the store (a Redis blip must not restart
        # every replica); readiness does.
        for probe, path in (("startupProbe", "/livez"), ("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            if c.get(probe, {}).get("httpGet", {}).get("path") != path:
                fail(f"tollgate-authority: {probe} is not an HTTP probe of {path}")
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
    """The TOLLGATE_* names the authority's source spells out (its settings
    are read in config.rs; the edge credential may be read elsewhere)."""
    src = ROOT / "authority" / "src"
    if not src.is_dir():
        return None
    names = set()
    for f in src.rglob("*.rs"):
        names |= set(re.findall(r'"(TOLLGATE_[A-Z0-9_]+)"', f.read_text()))
    return names


def check_authority_env(names, where):
    """Every TOLLGATE_* setting we pass must be one the authority reads
    (authority/src), except key secrets named by secret_env."""
    known = authority_env_vars()
    if known is None:
        fail("authority/src not found: cannot check the authority's environment names")
        return
    for n in sorted(names):
        if n.startswith("TOLLGATE_") and n not in known:
            fail(f"{where}: {n} is not a setting authority/src reads")


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
    # The door's own request semantics replace envoy.yaml's, so Envoy checks
    # the fields and values the door really sets (the EnvoyFilter's patch,
    # the HCM fields Envoy Gateway writes for the ClientTrafficPolicy).
    name = overlay_name(overlay)
    door = istio_hcm_settings(res) if name == "istio" else eg_hcm_settings(res)
    for tc in hcm_configs(cfg):
        for field in REQUEST_SEMANTICS:
            *parents, last = field.split(".")
            node = tc
            for p in parents:
                node = node.get(p, {})
            node.pop(last, None)
        for k in [k for k, v in tc.items() if v == {}]:
            del tc[k]
        tc.pop("access_log", None)
        deep_merge(tc, door)
    # The door's access log and stats tags (Envoy checks the formats and the
    # tag regexes).
    (_, logs, tags), = door_observability(name)
    if name == "envoy-gateway":
        for tc in hcm_configs(cfg):
            tc["access_log"] = logs
    cfg["stats_config"] = {"stats_tags": tags}
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


# ---- request semantics -------------------------------------------------------

HCM_FILTER = "envoy.filters.network.http_connection_manager"
HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
            ".v3.HttpConnectionManager")
# What every door sets on the HTTP connection manager in front of the filter,
# as Envoy's fields (docs/deploy.md, "Request semantics each door must set").
# The filter's rules and the upstream must read one path and one set of
# headers: dot segments resolved, `//` merged, an encoded `/` or `\` refused
# (the filter's strict_paths refuses it too), header names with `_` refused.
REQUEST_SEMANTICS = {
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "REJECT_REQUEST",
    "common_http_protocol_options.headers_with_underscores_action": "REJECT_REQUEST",
}
DOORS = ("native", "compose", "istio", "envoy-gateway")
# Envoy Gateway v1.9's ClientTrafficPolicy enums -> the HCM enums it writes
# (internal/xds/translator/listener.go: translateEscapePath,
# buildHeadersWithUnderscoresAction).
EG_ESCAPED_SLASHES = {"KeepUnchanged": "KEEP_UNCHANGED", "RejectRequest": "REJECT_REQUEST",
                      "UnescapeAndRedirect": "UNESCAPE_AND_REDIRECT",
                      "UnescapeAndForward": "UNESCAPE_AND_FORWARD"}
EG_UNDERSCORES = {"Allow": "ALLOW", "RejectRequest": "REJECT_REQUEST", "DropHeader": "DROP_HEADER"}
_MISSING = object()


def dotted_get(d, path):
    for p in path.split("."):
        if not isinstance(d, dict) or p not in d:
            return _MISSING
        d = d[p]
    return d


def deep_merge(into, value):
    """Proto merge of JSON objects, as Istio's EnvoyFilter MERGE does for
    the fields used here: objects merge, everything else replaces."""
    for k, v in value.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            deep_merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)
    return into


def hcm_configs(cfg):
    """The typed_config of every HTTP connection manager in a static Envoy
    config that carries the tollgate filter."""
    out = []
    for l in cfg["static_resources"]["listeners"]:
        for fc in l["filter_chains"]:
            for f in fc["filters"]:
                tc = f.get("typed_config", {})
                if any(hf.get("name") == "tollgate" for hf in tc.get("http_filters", [])):
                    out.append(tc)
    return out


def compose_envoy_config():
    """envoy/envoy.yaml as docker-compose runs it (compose-envoy.sh's rendering)."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "envoy.yaml"
        r = subprocess.run(["sh", str(ROOT / "scripts/deploy/compose-envoy.sh"), str(ENVOY_YAML), str(out)],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise SystemExit(f"compose-envoy.sh failed: {r.stderr}")
        return yaml.safe_load(out.read_text())


def the_gateway(res):
    gws = [r for r in res if r["kind"] == "Gateway"]
    if len(gws) != 1:
        raise SystemExit(f"expected one Gateway in the build, found {len(gws)}")
    return gws[0]


def targets_gateway(r, gw):
    """Whether a policy attaches to the whole Gateway gw (targetRefs or the
    older targetRef, no sectionName)."""
    refs = list(r["spec"].get("targetRefs", []))
    if "targetRef" in r["spec"]:
        refs.append(r["spec"]["targetRef"])
    return any(t.get("kind") == "Gateway" and t.get("group") == "gateway.networking.k8s.io"
               and t.get("name") == gw["metadata"]["name"] and not t.get("sectionName")
               for t in refs)


def istio_hcm_settings(res):
    """The HCM fields the build's EnvoyFilters merge into the gateway's
    connection manager."""
    gw = the_gateway(res)
    out = {}
    found = False
    for r in res:
        if r["kind"] != "EnvoyFilter" or not targets_gateway(r, gw):
            continue
        for i, p in enumerate(r["spec"].get("configPatches", [])):
            m = p.get("match", {})
            if p.get("applyTo") != "NETWORK_FILTER":
                continue
            where = f"{name_of(r)}: configPatches[{i}]"
            if dotted_get(m, "listener.filterChain.filter.name") != HCM_FILTER:
                continue
            if m.get("context") != "GATEWAY":
                fail(f"{where}: match.context must be GATEWAY (the gateway's listeners)")
            if p.get("patch", {}).get("operation") != "MERGE":
                fail(f"{where}: patch.operation must be MERGE (keep what Istio generates)")
                continue
            tc = p["patch"].get("value", {}).get("typed_config", {})
            if tc.get("@type") != HCM_TYPE:
                fail(f"{where}: typed_config @type is {tc.get('@type')!r}, not the HCM's")
                continue
            deep_merge(out, {k: v for k, v in tc.items() if k != "@type"})
            found = True
    if not found:
        fail(f"no EnvoyFilter merges into the HTTP connection manager of Gateway "
             f"{gw['metadata']['name']} (targetRefs, NETWORK_FILTER {HCM_FILTER}, MERGE)")
    return out


def eg_hcm_settings(res):
    """The HCM fields Envoy Gateway v1.9 writes for the build's
    ClientTrafficPolicy on the Gateway. Only what the policy states counts
    (normalize_path excepted: Envoy Gateway sets it on every listener)."""
    gw = the_gateway(res)
    ctps = [r for r in res if r["kind"] == "ClientTrafficPolicy" and targets_gateway(r, gw)]
    if len(ctps) != 1:
        fail(f"expected one ClientTrafficPolicy on Gateway {gw['metadata']['name']}, found {len(ctps)}")
        return {}
    spec = ctps[0]["spec"]
    out = {"normalize_path": True}
    path = spec.get("path", {})
    if "disableMergeSlashes" in path:
        out["merge_slashes"] = not path["disableMergeSlashes"]
    if "escapedSlashesAction" in path:
        out["path_with_escaped_slashes_action"] = EG_ESCAPED_SLASHES.get(
            path["escapedSlashesAction"], path["escapedSlashesAction"])
    und = spec.get("headers", {}).get("withUnderscoresAction")
    if und is not None:
        out["common_http_protocol_options"] = {
            "headers_with_underscores_action": EG_UNDERSCORES.get(und, und)}
    return out


def door_hcm_settings(door):
    """[(where, HCM fields)] for a door."""
    if door == "native":
        return [("envoy/envoy.yaml", tc) for tc in hcm_configs(yaml.safe_load(ENVOY_YAML.read_text()))]
    if door == "compose":
        return [("envoy.yaml as compose runs it", tc) for tc in hcm_configs(compose_envoy_config())]
    res = build(f"overlays/{door}")
    if door == "istio":
        return [("Istio gateway (EnvoyFilter)", istio_hcm_settings(res))]
    if door == "envoy-gateway":
        return [("Envoy Gateway proxy (ClientTrafficPolicy)", eg_hcm_settings(res))]
    raise SystemExit(f"unknown door {door} ({', '.join(DOORS)})")


def check_request_semantics(door):
    found = door_hcm_settings(door)
    if not found:
        fail(f"{door}: no HTTP connection manager carrying the tollgate filter")
    for where, settings in found:
        for field, want in REQUEST_SEMANTICS.items():
            have = dotted_get(settings, field)
            if have is _MISSING:
                fail(f"{door}: {where}: {field} is not set (state it: {want!r}; defaults differ "
                     "between Envoy, Istio and Envoy Gateway and between their releases)")
            elif have != want:
                fail(f"{door}: {where}: {field} is {have!r}, every door sets {want!r}")


# ---- observability: access log and stats tags ---------------------------------

# The access-log fields every door's log carries (envoy/envoy.yaml's).
ACCESS_LOG_FIELDS = {
    "method": "%REQ(:METHOD)%",
    "path": "%REQ_WITHOUT_QUERY(:PATH)%",
    "status": "%RESPONSE_CODE%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "decision": "%FILTER_STATE(wasm.tollgate_decision:PLAIN)%",
    "reason": "%FILTER_STATE(wasm.tollgate_reason:PLAIN)%",
    "subject": "%FILTER_STATE(wasm.tollgate_subject:PLAIN)%",
    "session": "%FILTER_STATE(wasm.tollgate_session:PLAIN)%",
}


def envoy_stats_tags():
    return yaml.safe_load(ENVOY_YAML.read_text())["stats_config"]["stats_tags"]


def eg_envoy_proxy(res):
    gw = the_gateway(res)
    ref = gw["spec"].get("infrastructure", {}).get("parametersRef", {})
    for r in res:
        if r["kind"] == "EnvoyProxy" and r["metadata"]["name"] == ref.get("name"):
            return r
    fail(f"Gateway {gw['metadata']['name']}: no EnvoyProxy named by infrastructure.parametersRef")
    return None


def eg_access_logs(proxy):
    """Envoy access_log entries for the EnvoyProxy's JSON file logs, as
    Envoy Gateway writes them (a file sink, json_format, and the
    req_without_query formatter when the format uses it)."""
    out = []
    for st in proxy["spec"].get("telemetry", {}).get("accessLog", {}).get("settings", []):
        fmt = st.get("format", {})
        if fmt.get("type") != "JSON":
            continue
        for sink in st.get("sinks", []):
            if sink.get("type") != "File":
                continue
            lf = {"json_format": fmt["json"]}
            if any("%REQ_WITHOUT_QUERY(" in v for v in fmt["json"].values()):
                lf["formatters"] = [{"name": "envoy.formatter.req_without_query", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"}}]
            out.append({"name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": sink["file"]["path"], "log_format": lf}})
    return out


def istio_bootstrap(res):
    gw = the_gateway(res)
    out = {}
    for r in res:
        if r["kind"] != "EnvoyFilter" or not targets_gateway(r, gw):
            continue
        for p in r["spec"].get("configPatches", []):
            if p.get("applyTo") == "BOOTSTRAP" and p.get("patch", {}).get("operation") == "MERGE":
                deep_merge(out, p["patch"].get("value", {}))
    return out


def door_observability(door):
    """(where, access_log entries, stats_tags, notes) of a door."""
    if door in ("native", "compose"):
        cfgs = [("envoy/envoy.yaml", yaml.safe_load(ENVOY_YAML.read_text())),
                ("envoy/envoy-native.yaml", yaml.safe_load((ROOT / "envoy/envoy-native.yaml").read_text()))]
        if door == "compose":
            cfgs = [("envoy.yaml as compose runs it", compose_envoy_config())]
        return [(w, [a for tc in hcm_configs(c) for a in tc.get("access_log", [])],
                 c.get("stats_config", {}).get("stats_tags")) for w, c in cfgs]
    res = build(f"overlays/{door}")
    if door == "istio":
        hcm = istio_hcm_settings(res)
        gw_cm = [r for r in res if r["kind"] == "ConfigMap" and "deployment" in r.get("data", {})]
        dep = yaml.safe_load(gw_cm[0]["data"]["deployment"]) if gw_cm else {}
        ann = dotted_get(dep, "spec.template.metadata.annotations")
        pc = yaml.safe_load(ann.get("proxy.istio.io/config", "")) if isinstance(ann, dict) else None
        prefixes = dotted_get(pc or {}, "proxyStatsMatcher.inclusionPrefixes")
        if prefixes is _MISSING or "wasmcustom.tollgate" not in prefixes:
            fail("istio: the gateway Deployment's proxy.istio.io/config does not include wasmcustom.tollgate "
                 "in proxyStatsMatcher.inclusionPrefixes (Istio would not export the filter's stats)")
        return [("Istio gateway (EnvoyFilters)", hcm.get("access_log", []),
                 dotted_get(istio_bootstrap(res), "stats_config.stats_tags"))]
    proxy = eg_envoy_proxy(res)
    if proxy is None:
        return []
    boot = proxy["spec"].get("bootstrap", {})
    if boot.get("type") != "Merge":
        fail("envoy-gateway: EnvoyProxy bootstrap.type must be Merge (keep what Envoy Gateway generates)")
    tags = dotted_get(yaml.safe_load(boot.get("value", "")) or {}, "stats_config.stats_tags")
    return [("Envoy Gateway proxy (EnvoyProxy)", eg_access_logs(proxy), tags)]


def check_observability(door):
    want_tags = envoy_stats_tags()
    # Every door's document is envoy/tollgate.json (+ an override that must
    # not turn it off): without filter_state the filter's fields log "-".
    if json.loads(DOC_PATH.read_text()).get("filter_state") is not True:
        fail(f"{door}: envoy/tollgate.json: filter_state is not true, so the access log's "
             "decision, reason, subject and session fields stay empty")
    for where, logs, tags in door_observability(door):
        formats = [dotted_get(a, "typed_config.log_format.json_format") for a in logs]
        good = [f for f in formats if isinstance(f, dict)
                and all(f.get(k) == v for k, v in ACCESS_LOG_FIELDS.items())]
        if not good:
            fail(f"{door}: {where}: no JSON access log with the fields {sorted(ACCESS_LOG_FIELDS)} "
                 f"(as envoy/envoy.yaml writes them)")
        for f in formats:
            if isinstance(f, dict) and any("%REQ(:PATH)%" in str(v) or "%REQ(Authorization)%" in str(v)
                                           for v in f.values()):
                fail(f"{door}: {where}: an access log field logs the query or a credential")
        if tags != want_tags:
            fail(f"{door}: {where}: stats_tags {tags!r} differ from envoy/envoy.yaml's {want_tags!r}")


# ---- credentials -------------------------------------------------------------

def vm_env_names(doc):
    """The environment variables a document reads in its VM: key secrets and
    the edge credential."""
    names = {k["secret_env"] for k in doc.get("keys", []) if "secret_env" in k}
    cred = doc.get("authority", {}).get("credential_env")
    if cred:
        names.add(cred)
    return names


def check_document_credential(doc, where):
    authority = doc.get("authority")
    if not authority:
        return
    if "credential" in authority:
        fail(f"{where}: authority.credential is inline (tests only); use credential_env")
    if not authority.get("credential_env"):
        fail(f"{where}: authority.credential_env is not set: the authority closes its feed and "
             "versions endpoints to an edge without a credential")


def signing_key_env(doc, kid):
    for k in doc.get("keys", []):
        if k.get("kid") == kid:
            return k.get("secret_env")
    return None


def proxy_env(res, overlay):
    """(where, env list) of the gateway proxy container the door deploys."""
    gw = the_gateway(res)
    ref = gw["spec"].get("infrastructure", {}).get("parametersRef")
    if not ref:
        fail(f"{name_of(gw)}: no infrastructure.parametersRef: the proxy gets no environment")
        return None, []
    by = {(r["kind"], r["metadata"]["name"]): r for r in res}
    target = by.get((ref["kind"], ref["name"]))
    if not target:
        fail(f"{name_of(gw)}: parametersRef {ref['kind']}/{ref['name']} is not in the build")
        return None, []
    if overlay == "istio":
        patch = yaml.safe_load(target.get("data", {}).get("deployment", "") or "{}")
        pod = dotted_get(patch, "spec.template.spec")
        for c in pod.get("containers", []) if isinstance(pod, dict) else []:
            if c.get("name") == "istio-proxy":
                return f"{name_of(target)} deployment/istio-proxy", c.get("env", [])
        fail(f"{name_of(target)}: its `deployment` patch has no istio-proxy container")
        return None, []
    env = dotted_get(target, "spec.provider.kubernetes.envoyDeployment.container.env")
    if env is _MISSING:
        fail(f"{name_of(target)}: no provider.kubernetes.envoyDeployment.container.env")
        return None, []
    return f"{name_of(target)} envoyDeployment", env


def secret_ref(env, name):
    """The secretKeyRef (name, key) an env list sets `name` from, None when
    it is not set, "literal" when it is set to a literal value."""
    for e in env:
        if e.get("name") == name:
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            return (ref["name"], ref["key"]) if ref else "literal"
    return None


def authority_container(res):
    for r in res:
        if r["kind"] == "Deployment" and r["metadata"]["name"] == "tollgate-authority":
            return r, r["spec"]["template"]["spec"]["containers"][0]
    raise SystemExit("no Deployment tollgate-authority in the build")


def authority_settings(res, c):
    """The authority container's plain settings (ConfigMaps it loads and
    literal env values)."""
    cms = {r["metadata"]["name"]: r for r in res if r["kind"] == "ConfigMap"}
    out = {}
    for ef in c.get("envFrom", []):
        cm = cms.get(ef.get("configMapRef", {}).get("name"))
        if cm:
            out.update(cm.get("data", {}))
    for e in c.get("env", []):
        if "value" in e:
            out[e["name"]] = e["value"]
    return out


def check_credentials(door):
    doc_default = tollgate_doc()
    if door in ("native", "compose"):
        doc = doc_default
        check_document_credential(doc, "envoy/tollgate.json")
        cfg = yaml.safe_load(ENVOY_YAML.read_text())
        keys = envoy_filter_config(cfg)["vm_config"].get("environment_variables", {}).get("host_env_keys", [])
        for n in sorted(vm_env_names(doc)):
            if n not in keys:
                fail(f"envoy/envoy.yaml: {n} (read by the document) is not in vm_config "
                     "environment_variables.host_env_keys: the filter's VM cannot see it")
        if door == "native":
            return
        svcs = yaml.safe_load((ROOT / "envoy" / "docker-compose.yml").read_text())["services"]
        envoy_env = svcs["envoy"].get("environment", {})
        auth_env = svcs["authority"].get("environment", {})
        for n in sorted(vm_env_names(doc)):
            if n not in envoy_env:
                fail(f"compose envoy: {n} (read by the document) is not in its environment")
        cred = doc.get("authority", {}).get("credential_env")
        if cred:
            if auth_env.get("TOLLGATE_EDGE_CREDENTIAL") is None:
                fail("compose authority: TOLLGATE_EDGE_CREDENTIAL is not set: its feed stays closed")
            elif auth_env.get("TOLLGATE_EDGE_CREDENTIAL") != envoy_env.get(cred):
                fail(f"compose: the authority's TOLLGATE_EDGE_CREDENTIAL and envoy's {cred} differ")
        key_env = signing_key_env(doc, auth_env.get("TOLLGATE_SIGNING_KID"))
        if not key_env:
            fail(f"compose authority: signing kid {auth_env.get('TOLLGATE_SIGNING_KID')!r} is no key of the document")
        elif auth_env.get("TOLLGATE_SIGNING_SECRET") != envoy_env.get(key_env):
            fail(f"compose: the authority's TOLLGATE_SIGNING_SECRET and envoy's {key_env} differ")
        return
    overlay = overlay_name(door)
    res = build(f"overlays/{overlay}")
    docs = plugin_docs(res)
    if not docs:
        fail(f"{overlay}: no filter document")
    where_env, penv = proxy_env(res, overlay)
    _, ac = authority_container(res)
    aset = authority_settings(res, ac)
    for r, doc, vm_env in docs:
        check_document_credential(doc, name_of(r))
        for n in sorted(vm_env_names(doc)):
            if n not in vm_env:
                fail(f"{name_of(r)}: {n} (read by the document) is not passed to the VM")
            if where_env is None:
                continue
            ref = secret_ref(penv, n)
            if ref is None:
                fail(f"{where_env}: the proxy's environment has no {n}")
            elif ref == "literal":
                fail(f"{where_env}: {n} is a literal value; it must come from a Secret")
        if where_env is None:
            continue
        cred = doc.get("authority", {}).get("credential_env")
        if cred:
            have, want = secret_ref(ac.get("env", []), "TOLLGATE_EDGE_CREDENTIAL"), secret_ref(penv, cred)
            if not isinstance(have, tuple):
                fail("tollgate-authority: TOLLGATE_EDGE_CREDENTIAL does not come from a Secret")
            elif have != want:
                fail(f"tollgate-authority reads TOLLGATE_EDGE_CREDENTIAL from {have}, the gateway "
                     f"presents {cred} from {want}: they must be the same Secret key")
        kid = aset.get("TOLLGATE_SIGNING_KID")
        key_env = signing_key_env(doc, kid)
        if not key_env:
            fail(f"tollgate-authority: signing kid {kid!r} is no key of {name_of(r)}'s document")
        else:
            have, want = secret_ref(ac.get("env", []), "TOLLGATE_SIGNING_SECRET"), secret_ref(penv, key_env)
            if not isinstance(have, tuple) or have != want:
                fail(f"tollgate-authority signs with {have}, the gateway verifies {kid} with "
                     f"{key_env} from {want}: they must be the same Secret key")


# ---- Secrets: the user's, documented, no demo value --------------------------

# The only Secret the Kubernetes build may generate: the URL of the demo Redis
# in base/redis.yaml, which has no password. Every other Secret (HMAC keys,
# the edge credential, the users file) is the user's to create.
GENERATED_SECRETS = {"tollgate-redis"}
DEPLOY_DOC = ROOT / "docs" / "deploy.md"


def demo_values():
    """Every demo secret the repository publishes: the defaults docker-compose
    and the Makefile fall back to (the demo key, the demo edge credential),
    the authority's built-in demo key, and the demo users' and client's
    passwords and hashes."""
    vals = set()
    compose = (ROOT / "envoy" / "docker-compose.yml").read_text()
    vals |= set(re.findall(r"\$\{[A-Z0-9_]+:-([^}]+)\}", compose))
    mk = ROOT / "Makefile"
    if mk.exists():
        vals |= {v for n, v in re.findall(r"^(?:export\s+)?(TOLLGATE_[A-Z0-9_]+)\s*\??=\s*(\S+)",
                                          mk.read_text(), re.M)
                 if re.search(r"KEY|SECRET|CREDENTIAL", n)}
    keys = (ROOT / "authority" / "src" / "keys.rs").read_text()
    vals |= set(re.findall(r'DEMO_SECRET_B64: &str = "([^"]+)"', keys))
    directory = (ROOT / "authority" / "src" / "directory.rs").read_text()
    for const in ("DEMO_USERS", "DEMO_CLIENTS"):
        m = re.search(const + r"[^=]*=\s*&\[(.*?)\];", directory, re.S)
        if not m:
            fail(f"authority/src/directory.rs: {const} not found: cannot check for demo principals")
            continue
        for tup in re.findall(r"\(([^()]*)\)", m.group(1)):
            strings = re.findall(r'"([^"]*)"', tup)
            if len(strings) == 4:  # (name, password, scopes, hash): the secrets
                vals |= {strings[1], strings[3]}
    if len(vals) < 4:
        fail(f"found only {len(vals)} demo values to look for: the check would be blind")
    return {v for v in vals if len(v) >= 8}


def strings_of(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from strings_of(k)
            yield from strings_of(v)
    elif isinstance(x, list):
        for v in x:
            yield from strings_of(v)


def base64_text(v):
    import base64
    import binascii
    try:
        # Kubernetes output may wrap long values.
        return base64.b64decode("".join(v.split()), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return v


def documented_secret_keys():
    """(name, key) of every `kubectl ... create secret generic NAME
    --from-literal=KEY=... / --from-file=KEY=...` command in docs/deploy.md."""
    text = DEPLOY_DOC.read_text().replace("\\\n", " ")
    out = set()
    for line in text.splitlines():
        m = re.search(r"kubectl\b.*\bcreate secret generic\s+([a-z0-9.-]+)(.*)", line)
        if m:
            for k in re.findall(r"--from-(?:literal|file)=([A-Za-z0-9._-]+)=", m.group(2)):
                out.add((m.group(1), k))
    return out


def secret_refs(res, overlay):
    """(name, key, optional, where) of every Secret key the build's pods read."""
    refs = []

    def from_env(env, where):
        for e in env or []:
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.append((ref["name"], ref["key"], ref.get("optional", False), f"{where} env {e['name']}"))

    for r in res:
        if r["kind"] == "Deployment":
            pod = r["spec"]["template"]["spec"]
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                from_env(c.get("env"), f"{name_of(r)}/{c['name']}")
                for ef in c.get("envFrom", []):
                    if "secretRef" in ef:
                        refs.append((ef["secretRef"]["name"], None, ef["secretRef"].get("optional", False),
                                     f"{name_of(r)}/{c['name']} envFrom"))
            for v in pod.get("volumes", []):
                if "secret" in v:
                    s = v["secret"]
                    for it in s.get("items", []) or [{"key": None}]:
                        refs.append((s["secretName"], it["key"], s.get("optional", False),
                                     f"{name_of(r)} volume {v['name']}"))
    if overlay in SYNC.TARGETS:
        where, env = proxy_env(res, overlay)
        if where:
            from_env(env, where)
    return refs


def check_secrets(overlay):
    res = build(overlay)
    name = pathlib.Path(overlay).name
    built = {r["metadata"]["name"]: r for r in res if r["kind"] == "Secret"}
    for n, s in built.items():
        if n not in GENERATED_SECRETS:
            fail(f"{name_of(s)}: the build carries a Secret; keys, the edge credential and users "
                 "are the user's to create (docs/deploy.md, \"Secrets\")")
        for plain in [base64_text(v) for v in strings_of(s.get("data", {}))] + list(
                strings_of(s.get("stringData", {}))):
            if re.search(r"://[^/@\s]*:[^/@\s]*@", plain):
                fail(f"{name_of(s)}: holds a URL with a password; create it from outside git")
    demo = demo_values()
    for r in res:
        found = list(strings_of(r))
        if r["kind"] == "Secret":
            found += [base64_text(v) for v in strings_of(r.get("data", {}))]
        for s in found:
            for v in demo:
                if v in s:
                    fail(f"{name_of(r)}: carries a demo secret ({v[:12]}...)")
    # The authority never falls back to its demo key or demo users.
    _, c = authority_container(res)
    aset = authority_settings(res, c)
    env = c.get("env", [])
    if "TOLLGATE_SIGNING_KID" not in aset or not isinstance(secret_ref(env, "TOLLGATE_SIGNING_SECRET"), tuple):
        fail("tollgate-authority: no TOLLGATE_SIGNING_KID + TOLLGATE_SIGNING_SECRET from a Secret: "
             "it would sign with the demo key")
    if not isinstance(secret_ref(env, "TOLLGATE_EDGE_CREDENTIAL"), tuple):
        fail("tollgate-authority: TOLLGATE_EDGE_CREDENTIAL does not come from a Secret: "
             "its feed and versions endpoints would stay closed")
    users = aset.get("TOLLGATE_USERS_FILE")
    if not users:
        fail("tollgate-authority: no TOLLGATE_USERS_FILE: it would enable its demo users")
    else:
        pod = authority_container(res)[0]["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        ok = False
        for m in c.get("volumeMounts", []):
            mp = m["mountPath"].rstrip("/") + "/"
            v = vols.get(m["name"], {})
            if users.startswith(mp) and "secret" in v:
                rel = users[len(mp):]
                items = v["secret"].get("items")
                ok = items is None or any(it["path"] == rel for it in items)
        if not ok:
            fail(f"tollgate-authority: TOLLGATE_USERS_FILE {users} is not a file of a mounted Secret volume")
    # Every Secret key the pods read and the build does not carry is
    # documented with the command that creates it.
    documented = documented_secret_keys()
    for sname, key, optional, where in secret_refs(res, name):
        if sname in built or optional:
            continue
        if key is None:
            fail(f"{where}: envFrom a user Secret {sname}: name its keys one by one")
        elif (sname, key) not in documented:
            fail(f"{where}: reads Secret {sname} key {key}, which docs/deploy.md does not show how to "
                 f"create (kubectl -n tollgate create secret generic {sname} --from-literal={key}=...)")


# ---- NetworkPolicy ---------------------------------------------------------------

# The labels each door's controller puts on its gateway proxy pods, for the
# Gateway `gw` (Istio 1.24+: kube-gateway template; Envoy Gateway v1.9:
# internal/infrastructure/kubernetes/proxy, without mergeGateways), and the
# ones of them that identify this Gateway's pods.
GATEWAY_POD_LABELS = {
    "istio": lambda gw: {"gateway.networking.k8s.io/gateway-name": gw["metadata"]["name"],
                         "gateway.istio.io/managed": "istio.io-gateway-controller"},
    "envoy-gateway": lambda gw: {"app.kubernetes.io/name": "envoy",
                                 "app.kubernetes.io/component": "proxy",
                                 "app.kubernetes.io/managed-by": "envoy-gateway",
                                 "gateway.envoyproxy.io/owning-gateway-name": gw["metadata"]["name"],
                                 "gateway.envoyproxy.io/owning-gateway-namespace":
                                     gw["metadata"].get("namespace", "")},
}
GATEWAY_IDENTITY = {
    "istio": ("gateway.networking.k8s.io/gateway-name",),
    "envoy-gateway": ("gateway.envoyproxy.io/owning-gateway-name",
                      "gateway.envoyproxy.io/owning-gateway-namespace"),
}


def selects(selector, labels):
    """Whether a LabelSelector selects a pod with these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        has, val = e["key"] in labels, labels.get(e["key"])
        op = e["operator"]
        if (op == "In" and val not in e.get("values", [])) or (op == "NotIn" and has and val in e.get("values", [])) \
                or (op == "Exists" and not has) or (op == "DoesNotExist" and has):
            return False
    return True


def check_network_policy(overlay):
    res = build(overlay)
    name = pathlib.Path(overlay).name
    deployments = {r["metadata"]["name"]: r for r in res if r["kind"] == "Deployment"}
    policies = [r for r in res if r["kind"] == "NetworkPolicy"]

    def pod_labels(dep):
        return deployments[dep]["spec"]["template"]["metadata"]["labels"]

    def container_ports(dep):
        return [p for c in deployments[dep]["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])]

    # protected Deployment -> (who may connect: labels, identifying keys, what)
    guarded = {"tollgate-redis": (pod_labels("tollgate-authority"), ("app.kubernetes.io/name",),
                                  "the authority")}
    if name in GATEWAY_POD_LABELS:
        gw = the_gateway(res)
        guarded["tollgate-authority"] = (GATEWAY_POD_LABELS[name](gw), GATEWAY_IDENTITY[name],
                                         f"the {name} proxies of Gateway {gw['metadata']['name']}")
    elif name != "base":
        raise SystemExit(f"{overlay}: no gateway pod labels known for this overlay")
    for dep, (peer_labels, identity, who) in guarded.items():
        if dep not in deployments:
            fail(f"no Deployment {dep} in the build")
            continue
        mine = [p for p in policies if selects(p["spec"].get("podSelector", {}), pod_labels(dep))]
        ingress_policies = [p for p in mine
                            if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])]
        if not ingress_policies:
            fail(f"no NetworkPolicy restricts ingress to Deployment {dep}: anything in the cluster "
                 f"can reach it, not only {who}")
            continue
        ports = container_ports(dep)
        for p in ingress_policies:
            sel = p["spec"].get("podSelector", {})
            others = [d for d in deployments if d != dep and selects(sel, pod_labels(d))]
            if others:
                fail(f"{name_of(p)}: its podSelector also selects {', '.join(others)}")
            for i, rule in enumerate(p["spec"].get("ingress", [])):
                where = f"{name_of(p)}: ingress[{i}]"
                if not rule.get("from"):
                    fail(f"{where}: no `from`: admits every source, not only {who}")
                for peer in rule.get("from", []):
                    if set(peer) != {"podSelector"}:
                        fail(f"{where}: a peer with {sorted(set(peer) - {'podSelector'})}: "
                             f"admits more than {who}")
                        continue
                    ps = peer["podSelector"]
                    if not selects(ps, peer_labels):
                        fail(f"{where}: podSelector {ps} does not select {who} ({peer_labels})")
                    missing = [k for k in identity if k not in ps.get("matchLabels", {})]
                    if missing:
                        fail(f"{where}: podSelector {ps} does not pin {', '.join(missing)}: admits more than {who}")
                    strays = [d for d in deployments if selects(ps, pod_labels(d))
                              and not all(pod_labels(d).get(k) == peer_labels.get(k) for k in identity)]
                    if strays:
                        fail(f"{where}: podSelector {ps} also admits {', '.join(strays)}")
                if not rule.get("ports"):
                    fail(f"{where}: no `ports`: admits every port of {dep}")
                for port in rule.get("ports", []):
                    if port.get("protocol", "TCP") != "TCP" or not any(
                            port.get("port") in (cp.get("name"), cp.get("containerPort")) for cp in ports):
                        fail(f"{where}: port {port} is not a TCP container port of {dep}")


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
    hc = svcs["authority"].get("healthcheck", {}).get("test", [])
    if hc[:1] != ["CMD"] or not hc[1:2] or not hc[1].endswith("/tollgate-authority") or hc[2:3] != ["healthcheck"]:
        fail(f"compose authority: healthcheck is not the binary's `healthcheck` subcommand: {hc}")
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
    elif cmd == "request-semantics":
        check_request_semantics(args[0])
    elif cmd == "observability":
        check_observability(args[0])
    elif cmd == "credentials":
        check_credentials(args[0])
    elif cmd == "secrets":
        check_secrets(args[0])
    elif cmd == "network-policy":
        check_network_policy(args[0])
    else:
        print(f"unknown check {cmd}", file=sys.stderr)
        return 2
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
