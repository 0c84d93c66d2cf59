#!/usr/bin/env python3
"""Writes the filter's configuration document (envoy/tollgate.json) into
every door that carries a copy of it:

  envoy/envoy.yaml                                            -> the Wasm filter's configuration
  envoy/envoy-native.yaml                                     -> the native module's configuration
                                                                 (native and docker-compose), verbatim
  envoy/k8s/overlays/istio/plugin-config.patch.json          -> WasmPlugin spec.pluginConfig
  envoy/k8s/overlays/envoy-gateway/plugin-config.patch.json  -> EnvoyExtensionPolicy spec.wasm[0].config

envoy/tollgate.json is the one source: edit it, then run this script. The
Kubernetes overlays get it as JSON6902 patches kustomize applies. Each
overlay's document is envoy/tollgate.json with that overlay's
`plugin-config.override.json` laid over it. An override is a fragment of the
document holding ONLY the per-door fields (PER_DOOR_FIELDS: where the
authority is, which differs between envoy.yaml's static cluster, Istio's
outbound|port||host cluster and the cluster an EnvoyPatchPolicy adds); it may
only replace fields envoy/tollgate.json has, never add or drop one. Anything
else must be the same at every door, so a difference anywhere else is drift.
envoy/envoy.yaml gets the file's text unchanged, in the literal block under
its one `value: |` line (the block tests/e2e/src/render.rs reads and
replaces).

`--check` writes nothing and exits 1 when a door differs from what it would
write, or an override is malformed (scripts/deploy/test.sh runs it;
tests/deploy_manifests.rs checks the same equality, with the same rules, from
cargo test; scripts/deploy/check_manifests.py checks the built manifests).
"""
import copy
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT / "envoy" / "tollgate.json"
ENVOY_YAML = ROOT / "envoy" / "envoy.yaml"
# The native Envoy module's config carries the same document (docs/native.md).
NATIVE_YAML = ROOT / "envoy" / "envoy-native.yaml"
STATIC_CONFIGS = (ENVOY_YAML, NATIVE_YAML)
OVERLAYS = ROOT / "envoy" / "k8s" / "overlays"
PATCH = "plugin-config.patch.json"
OVERRIDE = "plugin-config.override.json"
# overlay -> where kustomize puts the document in that overlay's resource
TARGETS = {
    "istio": "/spec/pluginConfig",
    "envoy-gateway": "/spec/wasm/0/config",
}
# The only fields an overlay may set differently from envoy/tollgate.json
# (tests/deploy_manifests.rs has the same list).
PER_DOOR_FIELDS = ("authority.cluster", "authority.host")


class OverrideError(Exception):
    pass


def leaves(override, prefix=""):
    """(dotted path, value) of every non-object value of an override."""
    if not isinstance(override, dict) or not override:
        raise OverrideError(f"{prefix or 'the override'}: must be a non-empty JSON object")
    for k, v in override.items():
        path = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            yield from leaves(v, path)
        else:
            yield path, v


def apply_override(doc, override):
    """envoy/tollgate.json's document with the override's fields replaced.
    Raises OverrideError for a field that is not per-door or that the
    document does not have."""
    out = copy.deepcopy(doc)
    for path, value in leaves(override):
        if path not in PER_DOOR_FIELDS:
            raise OverrideError(
                f"{path}: not a per-door field (only {', '.join(PER_DOOR_FIELDS)}); "
                "change envoy/tollgate.json instead")
        *parents, last = path.split(".")
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            raise OverrideError(f"{path}: envoy/tollgate.json has no such field to override")
        if type(value) is not type(node[last]):
            raise OverrideError(f"{path}: {type(value).__name__} where envoy/tollgate.json has "
                                f"{type(node[last]).__name__}")
        node[last] = value
    return out


def override_path(overlay):
    return OVERLAYS / overlay / OVERRIDE


def load_override(overlay):
    f = override_path(overlay)
    if not f.exists():
        raise OverrideError("missing (every overlay names its authority cluster and host)")
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise OverrideError(str(e)) from None


def expected_document(overlay, doc=None):
    """The document the overlay must carry: envoy/tollgate.json + its override."""
    if doc is None:
        doc = json.loads(SOURCE.read_text())
    try:
        return apply_override(doc, load_override(overlay))
    except OverrideError as e:
        raise OverrideError(f"{override_path(overlay).relative_to(ROOT)}: {e}") from None


def render(doc, path):
    patch = [{"op": "add", "path": path, "value": doc}]
    return json.dumps(patch, indent=2, ensure_ascii=False) + "\n"


class EmbedError(Exception):
    pass


def _indent(line):
    return len(line) - len(line.lstrip(" "))


def embed_in_envoy_yaml(yaml_text, doc_text):
    """envoy.yaml's text with the literal block under its one `value: |` line
    replaced by doc_text, at the block's indentation. Raises EmbedError when
    there is not exactly one such line (the anchor render.rs relies on)."""
    lines = yaml_text.split("\n")
    starts = [i for i, l in enumerate(lines) if l.strip() == "value: |"]
    if len(starts) != 1:
        raise EmbedError(f"expected one `value: |` line, found {len(starts)}")
    start = starts[0]
    outer = _indent(lines[start])
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > outer):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    body = [l for l in lines[start + 1:end] if l.strip()]
    pad = " " * (min(_indent(l) for l in body) if body else outer + 2)
    block = [pad + l if l else "" for l in doc_text.rstrip("\n").split("\n")]
    return "\n".join(lines[:start + 1] + block + lines[end:])


def main(argv):
    check = "--check" in argv
    source_text = SOURCE.read_text()
    doc = json.loads(source_text)
    problems = []
    outputs = []  # (file, text it must have)
    for static in STATIC_CONFIGS:
        try:
            outputs.append((static, embed_in_envoy_yaml(static.read_text(), source_text)))
        except EmbedError as e:
            problems.append(f"{static.relative_to(ROOT)}: {e}")
    for overlay, path in TARGETS.items():
        try:
            outputs.append((OVERLAYS / overlay / PATCH, render(expected_document(overlay, doc), path)))
        except OverrideError as e:
            problems.append(str(e))
    for target, want in outputs:
        rel = target.relative_to(ROOT)
        have = target.read_text() if target.exists() else None
        if have == want:
            continue
        if check:
            static = target in STATIC_CONFIGS
            what = "the document in " if static else ""
            problems.append(f"{what}{rel} differs from envoy/tollgate.json"
                            + ("" if static else f" + {target.parent.name}/{OVERRIDE}")
                            + ": run scripts/deploy/sync-plugin-config.py")
        else:
            target.write_text(want)
            print(f"wrote {rel}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
