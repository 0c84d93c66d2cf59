//! The filter module exports exactly the proxy-wasm callbacks it needs
//! (`scripts/wasm-opt.sh` removes the others with `wasm-metadce`).
//!
//! Envoy calls a callback only when the module exports it, so an export too
//! many costs a VM entry per request for nothing (`proxy_on_log`, bodies,
//! trailers), and one too few silently disables the glue's implementation.
//! This reads the module `make build` leaves and the glue's source: every
//! callback `src/glue/` implements must be exported, and no other callback
//! of the ABI but the ones every module needs.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;

/// Each proxy-wasm SDK trait method and the ABI export that calls it.
const CALLBACKS: &[(&str, &str)] = &[
    ("on_vm_start", "proxy_on_vm_start"),
    ("on_configure", "proxy_on_configure"),
    ("on_tick", "proxy_on_tick"),
    ("on_queue_ready", "proxy_on_queue_ready"),
    ("on_http_call_response", "proxy_on_http_call_response"),
    ("on_grpc_call_response_headers", "proxy_on_grpc_receive_initial_metadata"),
    ("on_grpc_stream_initial_metadata", "proxy_on_grpc_receive_initial_metadata"),
    ("on_grpc_call_response", "proxy_on_grpc_receive"),
    ("on_grpc_stream_message", "proxy_on_grpc_receive"),
    ("on_grpc_stream_trailing_metadata", "proxy_on_grpc_receive_trailing_metadata"),
    ("on_grpc_call_response_trailers", "proxy_on_grpc_receive_trailing_metadata"),
    ("on_grpc_stream_close", "proxy_on_grpc_close"),
    ("on_foreign_function", "proxy_on_foreign_function"),
    ("on_done", "proxy_on_done"),
    ("on_log", "proxy_on_log"),
    ("on_http_request_headers", "proxy_on_request_headers"),
    ("on_http_request_body", "proxy_on_request_body"),
    ("on_http_request_trailers", "proxy_on_request_trailers"),
    ("on_http_response_headers", "proxy_on_response_headers"),
    ("on_http_response_body", "proxy_on_response_body"),
    ("on_http_response_trailers", "proxy_on_response_trailers"),
    ("on_new_connection", "proxy_on_new_connection"),
    ("on_downstream_data", "proxy_on_downstream_data"),
    ("on_downstream_close", "proxy_on_downstream_connection_close"),
    ("on_upstream_data", "proxy_on_upstream_data"),
    ("on_upstream_close", "proxy_on_upstream_connection_close"),
];

/// What every module exports whatever the glue implements: the ABI version
/// marker, the allocator Envoy copies into, context creation (every root
/// and stream context) and deletion (the SDK frees the context there).
const ALWAYS: &[&str] =
    &["memory", "_initialize", "proxy_abi_version_0_2_1", "proxy_on_memory_allocate", "proxy_on_context_create", "proxy_on_delete"];

fn module_exports() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/wasm32-wasip1/release/tollgate.wasm");
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (`make build` builds the module)"));
    let mut names = BTreeSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ExportSection(exports) = payload.expect("a valid module") {
            for export in exports {
                names.insert(export.expect("a valid export").name.to_string());
            }
        }
    }
    names
}

/// The SDK callbacks `src/glue/` implements, by their `fn` lines.
fn implemented() -> BTreeSet<&'static str> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/glue");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (method, export) in CALLBACKS {
            if source.contains(&format!("fn {method}(")) {
                found.insert(*export);
            }
        }
    }
    found
}

#[test]
fn the_module_exports_every_callback_the_glue_implements_and_no_other() {
    let exports = module_exports();
    let implemented = implemented();
    assert!(implemented.contains("proxy_on_request_headers"), "the glue's source was read: {implemented:?}");
    for export in &implemented {
        assert!(exports.contains(*export), "the glue implements {export} but the module does not export it: add it to `keep` in scripts/wasm-opt.sh");
    }
    for export in &exports {
        let needed = ALWAYS.contains(&export.as_str()) || implemented.contains(export.as_str());
        assert!(needed, "{export} is exported but the glue does not implement it: Envoy would enter the VM for nothing");
    }
    for export in ALWAYS {
        assert!(exports.contains(*export), "{export} is missing");
    }
}
