//! The Envoy 1.40 dynamic-module ABI (`v0.2.0`): the callbacks this module
//! calls, the event hooks it exports, and safe handles over both. Every
//! `unsafe` of the crate is in this file, one `// SAFETY:` comment per block.
//!
//! Declared by hand from the ABI header (`abi.h`, the C contract between
//! Envoy and its modules), for exactly the entry points used here; each
//! one was checked against the Envoy 1.40.0 binary (`docs/native.md`,
//! "How the bindings were verified"). C enums are `int`-sized: they cross
//! as `u32`. A struct passed by value (`*_buffer`, two words) travels in
//! two registers, as the C ABI lays it out.
//!
//! The hooks do nothing but turn raw pointers into handles and call the
//! adapter ([`crate::filter`]) under [`crate::guard::entry`], which catches
//! any panic: none unwinds into Envoy.

use crate::filter::{self, ConfigState, FilterState};
use crate::wire::{self, CalloutAnswer};
use crate::guard;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// The ABI version this module was written against; Envoy 1.40.0's.
pub const ABI_VERSION: &str = "v0.2.0";
const ABI_VERSION_C: &[u8] = b"v0.2.0\0";

/// Symbols that exist from ABI v0.2.0 on (the stream-owned child spans that
/// bumped the version): their absence means an older Envoy.
const V0_2_MARKERS: [&str; 2] = [
    "envoy_dynamic_module_callback_http_span_spawn_child",
    "envoy_dynamic_module_callback_http_child_span_finish",
];

// ---- types (abi.h "Common Types", "HTTP Filter Types") --------------------

/// `envoy_dynamic_module_type_envoy_buffer`: bytes Envoy owns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const u8,
    length: usize,
}

/// `envoy_dynamic_module_type_module_buffer`: bytes this module owns.
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleBuffer {
    ptr: *const u8,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer { ptr: bytes.as_ptr(), length: bytes.len() }
    }

    /// A null buffer (`set_header` removes the header).
    fn null() -> ModuleBuffer {
        ModuleBuffer { ptr: std::ptr::null(), length: 0 }
    }
}

/// `envoy_dynamic_module_type_module_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleHttpHeader {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

impl ModuleHttpHeader {
    fn of(name: &str, value: &str) -> ModuleHttpHeader {
        ModuleHttpHeader { key_ptr: name.as_ptr(), key_length: name.len(), value_ptr: value.as_ptr(), value_length: value.len() }
    }
}

/// `envoy_dynamic_module_type_envoy_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

/// `envoy_dynamic_module_type_http_header_type`.
const REQUEST_HEADER: u32 = 0;
const RESPONSE_HEADER: u32 = 2;
/// `envoy_dynamic_module_type_attribute_id_SourceAddress` (`source.address`).
const ATTRIBUTE_SOURCE_ADDRESS: u32 = 24;
/// `envoy_dynamic_module_type_http_callout_init_result_Success`.
const CALLOUT_INIT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_result_Success`.
const CALLOUT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_metrics_result_Success`.
const METRICS_SUCCESS: u32 = 0;
/// `..._on_http_filter_{request,response}_{headers,body,trailers}_status_Continue`
/// and `..._on_http_filter_local_reply_status_Continue`: all 0.
const STATUS_CONTINUE: u32 = 0;
/// `envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration`.
const STATUS_STOP_ITERATION: u32 = 1;

/// `envoy_dynamic_module_type_log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    Info = 2,
    Warn = 3,
    Error = 4,
}

// ---- callbacks: Envoy implements, the module calls ------------------------

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_is_validation_mode() -> bool;
    fn envoy_dynamic_module_callback_get_concurrency() -> u32;

    fn envoy_dynamic_module_callback_http_get_headers_size(filter: *mut c_void, header_type: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(filter: *mut c_void, header_type: u32, out: *mut EnvoyHttpHeader) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(filter: *mut c_void, header_type: u32, key: ModuleBuffer, value: ModuleBuffer) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(filter: *mut c_void, header_type: u32, key: ModuleBuffer, value: ModuleBuffer) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status_code: u32,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_get_worker_index(filter: *mut c_void) -> u32;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(filter: *mut c_void, id: u32, out: *mut EnvoyBuffer) -> bool;

    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: *mut c_void,
        callout_id_out: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: *mut c_void,
        callout_id_out: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_scheduler_new(filter: *mut c_void) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(scheduler: *mut c_void, event_id: u64);
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(config: *mut c_void) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(scheduler: *mut c_void, event_id: u64);
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);

    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        config: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

/// Every callback this module imports, for the load-time check.
pub const IMPORTED: [&str; 28] = [
    "envoy_dynamic_module_callback_log",
    "envoy_dynamic_module_callback_is_validation_mode",
    "envoy_dynamic_module_callback_get_concurrency",
    "envoy_dynamic_module_callback_http_get_headers_size",
    "envoy_dynamic_module_callback_http_get_headers",
    "envoy_dynamic_module_callback_http_set_header",
    "envoy_dynamic_module_callback_http_add_header",
    "envoy_dynamic_module_callback_http_send_response",
    "envoy_dynamic_module_callback_http_filter_continue_decoding",
    "envoy_dynamic_module_callback_http_filter_get_worker_index",
    "envoy_dynamic_module_callback_http_filter_get_attribute_string",
    "envoy_dynamic_module_callback_http_filter_http_callout",
    "envoy_dynamic_module_callback_http_filter_config_http_callout",
    "envoy_dynamic_module_callback_http_filter_scheduler_new",
    "envoy_dynamic_module_callback_http_filter_scheduler_commit",
    "envoy_dynamic_module_callback_http_filter_scheduler_delete",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_new",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_commit",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_delete",
    "envoy_dynamic_module_callback_http_filter_config_define_counter",
    "envoy_dynamic_module_callback_http_filter_config_define_gauge",
    "envoy_dynamic_module_callback_http_filter_config_define_histogram",
    "envoy_dynamic_module_callback_http_filter_increment_counter",
    "envoy_dynamic_module_callback_http_filter_set_gauge",
    "envoy_dynamic_module_callback_http_filter_record_histogram_value",
    "envoy_dynamic_module_callback_http_filter_config_increment_counter",
    "envoy_dynamic_module_callback_http_filter_config_set_gauge",
    "envoy_dynamic_module_callback_http_filter_config_record_histogram_value",
];

/// Whether the process (Envoy) exports `symbol`.
fn exported(symbol: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(symbol) else { return false };
    // SAFETY: `name` is a NUL-terminated string that outlives the call;
    // dlsym(RTLD_DEFAULT, ..) only reads it and returns an address or null.
    let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    !address.is_null()
}

/// Why this Envoy cannot run this build, if it cannot: a callback missing,
/// or no v0.2.0 marker (an Envoy older than 1.40).
pub fn host_mismatch() -> Option<String> {
    if let Some(missing) = IMPORTED.iter().find(|s| !exported(s)) {
        return Some(format!("this Envoy does not export `{missing}`"));
    }
    if let Some(missing) = V0_2_MARKERS.iter().find(|s| !exported(s)) {
        return Some(format!("this Envoy does not export `{missing}` (ABI {ABI_VERSION} needs Envoy 1.40)"));
    }
    None
}

// ---- safe wrappers of the process-wide callbacks --------------------------

pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the buffer points into `message`, alive for the call; Envoy
    // copies what it logs before returning.
    unsafe { envoy_dynamic_module_callback_log(level as u32, ModuleBuffer::of(message.as_bytes())) }
}

pub fn is_validation_mode() -> bool {
    // SAFETY: no arguments; callable from any thread once the module is loaded.
    unsafe { envoy_dynamic_module_callback_is_validation_mode() }
}

pub fn concurrency() -> u32 {
    // SAFETY: no arguments; callable from any thread once the module is loaded.
    unsafe { envoy_dynamic_module_callback_get_concurrency() }
}

/// Copies `len` bytes at `ptr` (null or empty: nothing).
///
/// # Safety
/// `ptr` must be null or valid for reads of `len` bytes.
unsafe fn bytes(ptr: *const u8, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `ptr` is readable for `len` bytes.
    unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
}

/// Envoy's headers as owned pairs.
///
/// # Safety
/// `headers` must be null or point to `count` headers whose buffers are
/// readable for the duration of the call.
unsafe fn envoy_headers(headers: *const EnvoyHttpHeader, count: usize) -> Vec<(String, Vec<u8>)> {
    if headers.is_null() || count == 0 {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    let slice = unsafe { std::slice::from_raw_parts(headers, count) };
    slice
        .iter()
        .map(|h| {
            // SAFETY: each header's key and value are readable (the caller's guarantee).
            let (k, v) = unsafe { (bytes(h.key_ptr, h.key_length), bytes(h.value_ptr, h.value_length)) };
            (String::from_utf8_lossy(&k).into_owned(), v)
        })
        .collect()
}

/// The answer of a callout as Envoy hands it to a `*_callout_done` hook.
///
/// # Safety
/// As for [`envoy_headers`], and `chunks` null or `chunk_count` readable buffers.
unsafe fn callout_answer(
    result: u32,
    headers: *const EnvoyHttpHeader,
    header_count: usize,
    chunks: *const EnvoyBuffer,
    chunk_count: usize,
) -> CalloutAnswer {
    if result != CALLOUT_SUCCESS {
        return CalloutAnswer { status: None, body: Vec::new(), body_size: 0 };
    }
    // SAFETY: the caller's guarantee.
    let headers = unsafe { envoy_headers(headers, header_count) };
    let chunks: &[EnvoyBuffer] = if chunks.is_null() || chunk_count == 0 {
        &[]
    } else {
        // SAFETY: the caller's guarantee.
        unsafe { std::slice::from_raw_parts(chunks, chunk_count) }
    };
    let body_size = chunks.iter().map(|c| c.length).sum();
    let mut body = Vec::new();
    if body_size <= tollgate::revocation::MAX_FEED_BYTES {
        for c in chunks {
            // SAFETY: each chunk is readable for its length (the caller's guarantee).
            body.extend_from_slice(&unsafe { bytes(c.ptr, c.length) });
        }
    }
    CalloutAnswer { status: wire::status_of(&headers), body, body_size }
}

// ---- handles ----------------------------------------------------------------

/// An HTTP filter in Envoy (`http_filter_envoy_ptr`). Valid from
/// `on_http_filter_new` until `on_http_filter_destroy`, and used only on
/// its worker thread, inside one of its hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter(*mut c_void);

impl Filter {
    pub fn request_headers(self) -> Vec<(String, Vec<u8>)> {
        // SAFETY: `self` is a live filter on its own thread (the type's contract).
        let count = unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.0, REQUEST_HEADER) };
        let mut out = vec![EnvoyHttpHeader { key_ptr: std::ptr::null(), key_length: 0, value_ptr: std::ptr::null(), value_length: 0 }; count];
        // SAFETY: `out` has room for the `count` headers Envoy just reported.
        let ok = unsafe { envoy_dynamic_module_callback_http_get_headers(self.0, REQUEST_HEADER, out.as_mut_ptr()) };
        if !ok {
            return Vec::new();
        }
        // SAFETY: Envoy filled `out`; the buffers stay valid until this hook
        // returns or a header setter runs, and are copied now.
        unsafe { envoy_headers(out.as_ptr(), count) }
    }

    fn set(self, header_type: u32, name: &str, value: Option<&str>) -> bool {
        let value = value.map_or_else(ModuleBuffer::null, |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: a live filter on its thread; both buffers outlive the call.
        unsafe { envoy_dynamic_module_callback_http_set_header(self.0, header_type, ModuleBuffer::of(name.as_bytes()), value) }
    }

    pub fn set_request_header(self, name: &str, value: &str) -> bool {
        self.set(REQUEST_HEADER, name, Some(value))
    }

    pub fn remove_request_header(self, name: &str) -> bool {
        self.set(REQUEST_HEADER, name, None)
    }

    pub fn set_response_header(self, name: &str, value: &str) -> bool {
        self.set(RESPONSE_HEADER, name, Some(value))
    }

    pub fn add_response_header(self, name: &str, value: &str) -> bool {
        // SAFETY: a live filter on its thread; both buffers outlive the call.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.0,
                RESPONSE_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            )
        }
    }

    pub fn send_response(self, status: u16, headers: &[(String, String)], body: &str, details: &str) {
        let mut headers: Vec<ModuleHttpHeader> = headers.iter().map(|(n, v)| ModuleHttpHeader::of(n, v)).collect();
        // SAFETY: a live filter on its thread; `headers` and every buffer it
        // points into, `body` and `details` outlive the call (Envoy copies).
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::of(body.as_bytes()),
                ModuleBuffer::of(details.as_bytes()),
            )
        }
    }

    pub fn continue_decoding(self) {
        // SAFETY: a live filter on its thread.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    pub fn worker_index(self) -> u32 {
        // SAFETY: a live filter on its thread.
        unsafe { envoy_dynamic_module_callback_http_filter_get_worker_index(self.0) }
    }

    /// `source.address`: the downstream peer, `ip:port`.
    pub fn source_address(self) -> Option<String> {
        let mut out = EnvoyBuffer { ptr: std::ptr::null(), length: 0 };
        // SAFETY: a live filter on its thread; `out` is writable.
        let ok = unsafe { envoy_dynamic_module_callback_http_filter_get_attribute_string(self.0, ATTRIBUTE_SOURCE_ADDRESS, &mut out) };
        // SAFETY: on success Envoy points `out` at bytes valid until this hook returns; copied now.
        ok.then(|| String::from_utf8_lossy(&unsafe { bytes(out.ptr, out.length) }).into_owned())
    }

    /// An HTTP callout from this stream: its answer comes to
    /// `on_http_filter_http_callout_done` of this filter, never if the
    /// stream is gone first. Returns Envoy's callout id.
    pub fn callout(self, call: &tollgate::edge::Callout) -> Option<u64> {
        let (mut headers, body) = callout_parts(call);
        let mut id = 0u64;
        // SAFETY: a live filter on its thread; every buffer (cluster, header
        // names and values, body) outlives the call and Envoy copies them;
        // `id` is writable.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::of(call.cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                body,
                call.timeout_ms,
            )
        };
        (result == CALLOUT_INIT_SUCCESS).then_some(id)
    }

    /// A scheduler that runs `on_http_filter_scheduled` on this filter's
    /// worker thread, committed from any thread.
    pub fn scheduler(self) -> Scheduler {
        // SAFETY: a live filter on its thread.
        Scheduler(unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.0) })
    }

    pub fn increment_counter(self, id: usize, value: u64) -> bool {
        // SAFETY: a live filter on its thread; no labels (null, 0).
        unsafe { envoy_dynamic_module_callback_http_filter_increment_counter(self.0, id, std::ptr::null_mut(), 0, value) == METRICS_SUCCESS }
    }

    pub fn set_gauge(self, id: usize, value: u64) -> bool {
        // SAFETY: a live filter on its thread; no labels (null, 0).
        unsafe { envoy_dynamic_module_callback_http_filter_set_gauge(self.0, id, std::ptr::null_mut(), 0, value) == METRICS_SUCCESS }
    }

    pub fn record_histogram(self, id: usize, value: u64) -> bool {
        // SAFETY: a live filter on its thread; no labels (null, 0).
        unsafe {
            envoy_dynamic_module_callback_http_filter_record_histogram_value(self.0, id, std::ptr::null_mut(), 0, value) == METRICS_SUCCESS
        }
    }
}

/// The callout's headers as the ABI wants them, pointing into `call`.
fn callout_parts(call: &tollgate::edge::Callout) -> (Vec<ModuleHttpHeader>, ModuleBuffer) {
    let headers = call.headers.iter().map(|(n, v)| ModuleHttpHeader::of(n, v)).collect();
    let body = call.body.as_deref().map_or_else(ModuleBuffer::null, ModuleBuffer::of);
    (headers, body)
}

/// A filter configuration in Envoy (`http_filter_config_envoy_ptr`). Valid
/// until `on_http_filter_config_destroy`; its callouts, metric definitions
/// and scheduler creation happen on the main thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config(*mut c_void);

// SAFETY: the pointer is only an address passed back to Envoy; Envoy uses
// it on the main thread, which is the only thread this module calls it
// from (config hooks and `on_http_filter_config_scheduled`).
unsafe impl Send for Config {}
// SAFETY: as above: shared references only copy the address.
unsafe impl Sync for Config {}

impl Config {
    fn define(self, kind: MetricKind, name: &str) -> Option<usize> {
        let mut id = 0usize;
        let name = ModuleBuffer::of(name.as_bytes());
        // SAFETY: config hooks run on the main thread while the config is
        // alive; `name` outlives the call; no labels; `id` is writable.
        let result = unsafe {
            match kind {
                MetricKind::Counter => envoy_dynamic_module_callback_http_filter_config_define_counter(self.0, name, std::ptr::null_mut(), 0, &mut id),
                MetricKind::Gauge => envoy_dynamic_module_callback_http_filter_config_define_gauge(self.0, name, std::ptr::null_mut(), 0, &mut id),
                MetricKind::Histogram => {
                    envoy_dynamic_module_callback_http_filter_config_define_histogram(self.0, name, std::ptr::null_mut(), 0, &mut id)
                }
            }
        };
        (result == METRICS_SUCCESS).then_some(id)
    }

    pub fn define_counter(self, name: &str) -> Option<usize> {
        self.define(MetricKind::Counter, name)
    }

    pub fn define_gauge(self, name: &str) -> Option<usize> {
        self.define(MetricKind::Gauge, name)
    }

    pub fn define_histogram(self, name: &str) -> Option<usize> {
        self.define(MetricKind::Histogram, name)
    }

    pub fn increment_counter(self, id: usize, value: u64) -> bool {
        // SAFETY: main thread, live config; no labels.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(self.0, id, std::ptr::null_mut(), 0, value) == METRICS_SUCCESS
        }
    }

    pub fn set_gauge(self, id: usize, value: u64) -> bool {
        // SAFETY: main thread, live config; no labels.
        unsafe { envoy_dynamic_module_callback_http_filter_config_set_gauge(self.0, id, std::ptr::null_mut(), 0, value) == METRICS_SUCCESS }
    }

    pub fn record_histogram(self, id: usize, value: u64) -> bool {
        // SAFETY: main thread, live config; no labels.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_record_histogram_value(self.0, id, std::ptr::null_mut(), 0, value)
                == METRICS_SUCCESS
        }
    }

    /// An HTTP callout from the configuration (main thread): its answer comes
    /// to `on_http_filter_config_http_callout_done`. Returns Envoy's id.
    pub fn callout(self, call: &tollgate::edge::Callout) -> Option<u64> {
        let (mut headers, body) = callout_parts(call);
        let mut id = 0u64;
        // SAFETY: main thread, live config; every buffer outlives the call
        // and Envoy copies them; `id` is writable.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::of(call.cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                body,
                call.timeout_ms,
            )
        };
        (result == CALLOUT_INIT_SUCCESS).then_some(id)
    }

    /// A scheduler that runs `on_http_filter_config_scheduled` on the main
    /// thread, committed from any thread.
    pub fn scheduler(self) -> ConfigScheduler {
        // SAFETY: main thread (config_new), live config.
        ConfigScheduler(unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) })
    }
}

#[derive(Clone, Copy)]
enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// A filter's scheduler (`http_filter_scheduler_module_ptr`): the module
/// owns it and deletes it exactly once ([`Scheduler::delete`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Scheduler(*mut c_void);

// SAFETY: the ABI documents the scheduler as the way to reach a filter
// "from any thread including the ones managed by the module"; Envoy's
// object holds a weak reference and posts to the worker's dispatcher.
unsafe impl Send for Scheduler {}

impl Scheduler {
    /// Runs `on_http_filter_scheduled(event_id)` on the filter's worker
    /// thread (a no-op once the filter is gone).
    pub fn commit(&self, event_id: u64) {
        // SAFETY: not yet deleted (delete consumes `self`); thread-safe per the ABI.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0, event_id) }
    }

    pub fn delete(self) {
        // SAFETY: created by scheduler_new and deleted once (`self` is consumed).
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0) }
    }
}

/// The configuration's scheduler (main thread).
#[derive(Debug)]
pub struct ConfigScheduler(*mut c_void);

// SAFETY: as for [`Scheduler`]: committed from the ticker thread, which the
// ABI allows ("from any thread"); deleted once, after that thread stopped.
unsafe impl Send for ConfigScheduler {}
// SAFETY: `commit` through a shared reference is what the ABI allows from any thread.
unsafe impl Sync for ConfigScheduler {}

impl ConfigScheduler {
    pub fn commit(&self, event_id: u64) {
        // SAFETY: not yet deleted; thread-safe per the ABI.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event_id) }
    }

    pub fn delete(self) {
        // SAFETY: created by config_scheduler_new and deleted once.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

// ---- event hooks: the module implements, Envoy calls ----------------------

/// Envoy loads the module: report the ABI version, or refuse (null) when
/// this Envoy lacks what the build needs.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guard::quiet_panics();
    if guard::PANIC_STRATEGY == "abort" {
        log(LogLevel::Warn, "tollgate: this build aborts on a panic (panic = \"abort\"): a bug would take Envoy down; build with panic = \"unwind\" (docs/native.md)");
    }
    let ok = guard::entry("program_init", false, || match host_mismatch() {
        None => true,
        Some(why) => {
            log(
                LogLevel::Error,
                &format!("tollgate: refusing to load: built for the Envoy dynamic-module ABI {ABI_VERSION} (Envoy 1.40); {why}"),
            );
            false
        }
    });
    if ok {
        ABI_VERSION_C.as_ptr().cast()
    } else {
        std::ptr::null()
    }
}

/// A filter configuration: the Tollgate document. Null refuses it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    // SAFETY: Envoy passes buffers valid for the duration of this hook; copied now.
    let (name, document) = unsafe { (bytes(name.ptr, name.length), bytes(config.ptr, config.length)) };
    let state = guard::entry("http_filter_config_new", None, || filter::config_new(Config(config_envoy), &name, &document));
    match state {
        Some(state) => Arc::into_raw(state).cast(),
        None => std::ptr::null(),
    }
}

/// Borrows the configuration behind `ptr` for one hook.
///
/// # Safety
/// `ptr` must come from `on_http_filter_config_new` and not be destroyed yet.
unsafe fn config_ref<'a>(ptr: *const c_void) -> &'a ConfigState {
    // SAFETY: the caller's guarantee: `ptr` is `Arc::into_raw` of a live ConfigState.
    unsafe { &*ptr.cast::<ConfigState>() }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config_module: *const c_void) {
    if config_module.is_null() {
        return;
    }
    // SAFETY: Envoy destroys each configuration once, with the pointer
    // config_new returned (`Arc::into_raw`); filters hold their own clones.
    let state = unsafe { Arc::from_raw(config_module.cast::<ConfigState>()) };
    guard::entry("http_filter_config_destroy", (), || state.stop());
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(config_envoy: *mut c_void, config_module: *const c_void, event_id: u64) {
    // SAFETY: Envoy calls this on the main thread for a live configuration.
    let state = unsafe { config_ref(config_module) };
    guard::entry("http_filter_config_scheduled", (), || state.on_scheduled(Config(config_envoy), event_id));
}

#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: *mut c_void,
    config_module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    header_count: usize,
    chunks: *const EnvoyBuffer,
    chunk_count: usize,
) {
    // SAFETY: a live configuration (main thread); headers and chunks are
    // valid for this hook per the ABI, and copied now.
    let (state, answer) = unsafe { (config_ref(config_module), callout_answer(result, headers, header_count, chunks, chunk_count)) };
    guard::entry("http_filter_config_http_callout_done", (), || state.on_callout_done(Config(config_envoy), callout_id, answer));
}

/// A stream begins: the filter's state, owned by the module until destroy.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(config_module: *const c_void, filter_envoy: *mut c_void) -> *const c_void {
    if config_module.is_null() {
        return std::ptr::null();
    }
    // SAFETY: `config_module` is live (Envoy creates filters only from live
    // configurations); the filter takes its own counted reference.
    let config = unsafe {
        Arc::increment_strong_count(config_module.cast::<ConfigState>());
        Arc::from_raw(config_module.cast::<ConfigState>())
    };
    let filter = guard::entry("http_filter_new", None, || Some(FilterState::new(config, Filter(filter_envoy))));
    match filter {
        Some(f) => Box::into_raw(Box::new(f)).cast_const().cast(),
        None => std::ptr::null(),
    }
}

/// Borrows the filter state behind `ptr` for one hook. Shared, never
/// `&mut`: hooks of one filter nest (a local reply runs the response hooks
/// inside `send_response`), so the state is `Cell`s, used on one thread.
///
/// # Safety
/// `ptr` must come from `on_http_filter_new` and not be destroyed yet.
unsafe fn filter_ref<'a>(ptr: *const c_void) -> &'a FilterState {
    // SAFETY: the caller's guarantee: `ptr` is `Box::into_raw` of a live
    // FilterState; Envoy runs a filter's hooks on its worker thread only.
    unsafe { &*ptr.cast::<FilterState>() }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(filter_envoy: *mut c_void, filter_module: *const c_void, _end_of_stream: bool) -> u32 {
    // SAFETY: a live filter, on its worker thread.
    let filter = unsafe { filter_ref(filter_module) };
    let handle = Filter(filter_envoy);
    let go_on = guard::request_entry(filter, handle, "http_filter_request_headers", |f| f.on_request_headers(handle));
    if go_on {
        STATUS_CONTINUE
    } else {
        STATUS_STOP_ITERATION
    }
}

/// `..._request_body_status`: StopIterationAndBuffer.
const BODY_STOP_AND_BUFFER: u32 = 1;
/// `..._request_trailers_status`: StopIteration.
const TRAILERS_STOP: u32 = 1;

/// A body or trailers of a request still waiting on its decision must not
/// go on: Envoy takes Continue here as "forward the request", which would
/// send a paused (unchecked) request upstream with the client's headers.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(_filter_envoy: *mut c_void, filter_module: *const c_void, _end_of_stream: bool) -> u32 {
    // SAFETY: a live filter, on its worker thread.
    let filter = unsafe { filter_ref(filter_module) };
    if filter.paused() {
        BODY_STOP_AND_BUFFER
    } else {
        STATUS_CONTINUE
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_filter_envoy: *mut c_void, filter_module: *const c_void) -> u32 {
    // SAFETY: a live filter, on its worker thread.
    let filter = unsafe { filter_ref(filter_module) };
    if filter.paused() {
        TRAILERS_STOP
    } else {
        STATUS_CONTINUE
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(filter_envoy: *mut c_void, filter_module: *const c_void, _end_of_stream: bool) -> u32 {
    // SAFETY: a live filter, on its worker thread.
    let filter = unsafe { filter_ref(filter_module) };
    guard::entry("http_filter_response_headers", (), || filter.on_response_headers(Filter(filter_envoy)));
    STATUS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(_filter_envoy: *mut c_void, _filter_module: *const c_void, _end_of_stream: bool) -> u32 {
    STATUS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_filter_envoy: *mut c_void, _filter_module: *const c_void) -> u32 {
    STATUS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_filter_envoy: *mut c_void, filter_module: *const c_void) {
    // SAFETY: a live filter, on its worker thread.
    let filter = unsafe { filter_ref(filter_module) };
    guard::entry("http_filter_stream_complete", (), || filter.on_done());
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module: *const c_void) {
    if filter_module.is_null() {
        return;
    }
    // SAFETY: Envoy destroys each filter once, with the pointer
    // on_http_filter_new returned (`Box::into_raw`).
    let filter = unsafe { Box::from_raw(filter_module.cast::<FilterState>().cast_mut()) };
    guard::entry("http_filter_destroy", (), || filter.on_done());
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(filter_envoy: *mut c_void, filter_module: *const c_void, _event_id: u64) {
    // SAFETY: a live filter, on its worker thread.
    let filter = unsafe { filter_ref(filter_module) };
    let handle = Filter(filter_envoy);
    guard::request_entry(filter, handle, "http_filter_scheduled", |f| {
        f.on_scheduled(handle);
        true
    });
}

#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    header_count: usize,
    chunks: *const EnvoyBuffer,
    chunk_count: usize,
) {
    // SAFETY: a live filter on its worker thread; headers and chunks are
    // valid for this hook per the ABI, and copied now.
    let (filter, answer) = unsafe { (filter_ref(filter_module), callout_answer(result, headers, header_count, chunks, chunk_count)) };
    let handle = Filter(filter_envoy);
    guard::request_entry(filter, handle, "http_filter_http_callout_done", |f| {
        f.on_callout_done(handle, callout_id, answer);
        true
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    STATUS_CONTINUE
}

// Hooks Envoy resolves at configuration time for features this module does
// not use. It never starts an HTTP stream (`start_http_stream` is not
// imported), so the stream hooks are never called; they exist because
// Envoy 1.40 refuses a module without them.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _header_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailer_count: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(_filter_envoy: *mut c_void, _filter_module: *const c_void, _stream_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _config_envoy: *mut c_void,
    _config_module: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _header_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _config_envoy: *mut c_void,
    _config_module: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _config_envoy: *mut c_void,
    _config_module: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailer_count: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(_config_envoy: *mut c_void, _config_module: *const c_void, _stream_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _config_envoy: *mut c_void,
    _config_module: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}
