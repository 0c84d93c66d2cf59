//! The few proxy-wasm host calls the glue makes on a request, declared here
//! instead of taken from the SDK: the SDK's wrappers `panic!` on any status
//! they do not expect (a header map gone because the stream ended, a local
//! reply after the response started), and a panic takes the worker's whole
//! VM down. These return the status; the glue ignores what it cannot act on.
//! They also carry what the SDK's do not: a local reply's response code
//! details (`%RESPONSE_CODE_DETAILS%`).

/// The proxy-wasm ABI 0.2.1 imports, as Envoy exports them.
mod abi {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_send_local_response(
            status_code: u32,
            details_data: *const u8,
            details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        pub fn proxy_replace_header_map_value(map_type: u32, key_data: *const u8, key_size: usize, value_data: *const u8, value_size: usize) -> u32;
        pub fn proxy_add_header_map_value(map_type: u32, key_data: *const u8, key_size: usize, value_data: *const u8, value_size: usize) -> u32;
        pub fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
        pub fn proxy_continue_stream(stream_type: u32) -> u32;
        pub fn proxy_set_effective_context(context_id: u32) -> u32;
        pub fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> u32;
    }
}

const OK: u32 = 0;
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const STREAM_REQUEST: u32 = 0;

/// A host call did not succeed; its proxy-wasm status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed(pub u32);

fn status(s: u32) -> Result<(), Failed> {
    if s == OK {
        Ok(())
    } else {
        Err(Failed(s))
    }
}

/// The proxy-wasm header-map encoding: count, then (name length, value
/// length) pairs, then each name and value followed by NUL.
fn encode_map(map: &[(String, String)]) -> Vec<u8> {
    let size = 4 + map.iter().map(|(n, v)| n.len() + v.len() + 10).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (n, v) in map {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in map {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Answers the current request locally; `details` becomes its response
/// code details (no white space).
pub fn send_local_response(status_code: u16, details: &str, headers: &[(String, String)], body: &[u8]) -> Result<(), Failed> {
    let map = encode_map(headers);
    // SAFETY: every pointer/length pair comes from a live slice or Vec that
    // outlives the call; the host copies what it needs before returning.
    status(unsafe {
        abi::proxy_send_local_response(
            u32::from(status_code),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    })
}

/// Sets (replaces) or removes a request header of the current request.
pub fn set_request_header(name: &str, value: Option<&str>) -> Result<(), Failed> {
    set_header(REQUEST_HEADERS, name, value)
}

/// Sets (replaces) a response header of the current request.
pub fn set_response_header(name: &str, value: &str) -> Result<(), Failed> {
    set_header(RESPONSE_HEADERS, name, Some(value))
}

/// Adds a response header of the current request (beside any of that name).
pub fn add_response_header(name: &str, value: &str) -> Result<(), Failed> {
    // SAFETY: name and value are live string slices for the whole call.
    status(unsafe { abi::proxy_add_header_map_value(RESPONSE_HEADERS, name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

fn set_header(map: u32, name: &str, value: Option<&str>) -> Result<(), Failed> {
    match value {
        // SAFETY: name and value are live string slices for the whole call.
        Some(v) => status(unsafe { abi::proxy_replace_header_map_value(map, name.as_ptr(), name.len(), v.as_ptr(), v.len()) }),
        // SAFETY: name is a live string slice for the whole call.
        None => status(unsafe { abi::proxy_remove_header_map_value(map, name.as_ptr(), name.len()) }),
    }
}

/// Resumes the current request (paused in its request-headers phase).
pub fn resume_request() -> Result<(), Failed> {
    // SAFETY: no pointers; the host checks the current context's state.
    status(unsafe { abi::proxy_continue_stream(STREAM_REQUEST) })
}

/// Makes context `id` current for the host calls that follow.
pub fn set_effective_context(id: u32) -> Result<(), Failed> {
    // SAFETY: no pointers; an unknown id is a status, not UB.
    status(unsafe { abi::proxy_set_effective_context(id) })
}

/// Sets a property of the current stream; Envoy keeps it as filter state
/// `wasm.<name>`, readable in access logs as `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_property(name: &str, value: &[u8]) -> Result<(), Failed> {
    // SAFETY: name and value are live slices for the whole call.
    status(unsafe { abi::proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}
