#!/usr/bin/env python3
"""Builds the filter's OCI image layout without a container engine.

Usage: oci_image.py build MODULE LAYOUT_DIR TAG
       oci_image.py extract LAYOUT_DIR TAG OUT_MODULE

Variant: the *compat* Wasm image (the Wasm OCI image spec's
`module.wasm.image/variant: compat`): a standard OCI image manifest
(application/vnd.oci.image.manifest.v1+json) whose single layer
(application/vnd.oci.image.layer.v1.tar+gzip) holds one file, `plugin.wasm`.
Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy (type Image) both
pull it, and every registry and tool (skopeo, crane, docker, oras) treats it as
an ordinary image; the OCI-artifact variant
(application/vnd.module.wasm.content.layer.v1+wasm) is refused by some
registries and proxies that only accept image media types.

The layer is reproducible: a fixed mtime, owner and mode in the tar and no
timestamp in the gzip header, so the same module always gives the same digests.
"""
import gzip
import hashlib
import io
import json
import pathlib
import sys
import tarfile

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def put_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    d = layout / "blobs" / "sha256"
    d.mkdir(parents=True, exist_ok=True)
    (d / digest).write_bytes(data)
    return f"sha256:{digest}"


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build(module, layout, tag):
    module = pathlib.Path(module)
    layout = pathlib.Path(layout)
    wasm = module.read_bytes()
    if wasm[:4] != b"\0asm":
        raise SystemExit(f"{module} is not a WebAssembly module")
    module_digest = "sha256:" + hashlib.sha256(wasm).hexdigest()

    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        info.mtime = 0
        info.mode = 0o444
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    diff_id = "sha256:" + hashlib.sha256(tar_bytes.getvalue()).hexdigest()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(tar_bytes.getvalue())
    layer = gz.getvalue()

    if layout.exists():
        for p in sorted(layout.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layer_digest = put_blob(layout, layer)
    config = canonical({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    config_digest = put_blob(layout, config)
    annotations = {
        "module.wasm.image/variant": "compat",
        "org.opencontainers.image.title": "tollgate",
        "org.opencontainers.image.description": "Tollgate proxy-wasm filter (wasm32-wasip1)",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.version": tag,
        "dev.tollgate.module.digest": module_digest,
    }
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
        "layers": [{
            "mediaType": LAYER_TYPE, "digest": layer_digest, "size": len(layer),
            "annotations": {"org.opencontainers.image.title": "plugin.wasm"},
        }],
        "annotations": annotations,
    })
    manifest_digest = put_blob(layout, manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_TYPE, "digest": manifest_digest, "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }
    (layout / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    print(f"oci layout {layout} tag {tag}")
    print(f"  manifest {manifest_digest}")
    print(f"  module   {module_digest} ({len(wasm)} bytes) as plugin.wasm in layer {layer_digest}")


def blob(layout, digest):
    algo, hexd = digest.split(":")
    data = (layout / "blobs" / algo / hexd).read_bytes()
    if hashlib.new(algo, data).hexdigest() != hexd:
        raise SystemExit(f"blob {digest} does not match its digest")
    return data


def extract(layout, tag, out):
    layout = pathlib.Path(layout)
    index = json.loads((layout / "index.json").read_text())
    ms = [m for m in index["manifests"]
          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    if len(ms) != 1:
        raise SystemExit(f"{layout}: tag {tag} not found once in index.json")
    manifest = json.loads(blob(layout, ms[0]["digest"]))
    if manifest.get("mediaType", MANIFEST_TYPE) != MANIFEST_TYPE or len(manifest["layers"]) != 1:
        raise SystemExit(f"{layout}: not a single-layer OCI image manifest")
    layer = manifest["layers"][0]
    if layer["mediaType"] != LAYER_TYPE:
        raise SystemExit(f"{layout}: layer media type {layer['mediaType']}")
    with tarfile.open(fileobj=io.BytesIO(blob(layout, layer["digest"])), mode="r:gz") as tar:
        names = tar.getnames()
        if names != ["plugin.wasm"]:
            raise SystemExit(f"{layout}: layer holds {names}, expected only plugin.wasm")
        data = tar.extractfile("plugin.wasm").read()
    pathlib.Path(out).write_bytes(data)
    print(f"extracted plugin.wasm sha256:{hashlib.sha256(data).hexdigest()} from {ms[0]['digest']}")


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) == 4 and a[0] == "build":
        build(a[1], a[2], a[3])
    elif len(a) == 4 and a[0] == "extract":
        extract(a[1], a[2], a[3])
    else:
        print(__doc__)
        sys.exit(2)
