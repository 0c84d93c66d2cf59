#!/usr/bin/env python3
"""Writes the filter's configuration document (envoy/tollgate.json) into the
Kubernetes overlays, as JSON6902 patches kustomize applies:

  envoy/k8s/overlays/istio/plugin-config.patch.json          -> WasmPlugin spec.pluginConfig
  envoy/k8s/overlays/envoy-gateway/plugin-config.patch.json  -> EnvoyExtensionPolicy spec.wasm[0].config

envoy/tollgate.json is the one source: edit it, then run this script.
`--check` writes nothing and exits 1 when a patch differs from what it would
write (scripts/deploy/test.sh runs it; tests/deploy_manifests.rs checks the
same equality from cargo test).
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT / "envoy" / "tollgate.json"
TARGETS = {
    ROOT / "envoy/k8s/overlays/istio/plugin-config.patch.json": "/spec/pluginConfig",
    ROOT / "envoy/k8s/overlays/envoy-gateway/plugin-config.patch.json": "/spec/wasm/0/config",
}


def render(doc, path):
    patch = [{"op": "add", "path": path, "value": doc}]
    return json.dumps(patch, indent=2, ensure_ascii=False) + "\n"


def main(argv):
    check = "--check" in argv
    doc = json.loads(SOURCE.read_text())
    stale = []
    for target, path in TARGETS.items():
        want = render(doc, path)
        have = target.read_text() if target.exists() else None
        if have == want:
            continue
        if check:
            stale.append(target.relative_to(ROOT))
        else:
            target.write_text(want)
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        for t in stale:
            print(f"{t} differs from envoy/tollgate.json: run scripts/deploy/sync-plugin-config.py",
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
