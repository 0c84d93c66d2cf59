//! [`Host`] over proxy-wasm: shared data and callouts through the SDK, so
//! a callout's answer is routed back to the context that made it.

use crate::edge::{Callout, CasMismatch, DispatchFailed, Host};
use proxy_wasm::traits::Context;
use proxy_wasm::types::Status;
use std::time::Duration;

pub(super) struct WasmHost<'c>(pub &'c dyn Context);

impl Host for WasmHost<'_> {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.get_shared_data(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        match self.0.set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) | Err(_) => Err(CasMismatch),
        }
    }

    fn dispatch(&mut self, call: &Callout) -> Result<u32, DispatchFailed> {
        let headers: Vec<(&str, &str)> = call.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let timeout = Duration::from_millis(call.timeout_ms);
        self.0.dispatch_http_call(&call.cluster, headers, call.body.as_deref(), vec![], timeout).map_err(|_| DispatchFailed)
    }
}
