//! The proxy-wasm glue: reads the request from Envoy, asks the core, carries
//! out the answer. Nothing here decides anything.

use crate::authenticator::{self, Decision, DenyReason, HeaderOp, Knowledge, Request};
use crate::revocation::{LiveVersions, RevocationSet};
use crate::config::Config;
use crate::response;
use crate::token::TokenError;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { filter: None }) });
}}

/// Counter ids, defined once per VM at configure time.
struct Metrics {
    allowed: u32,
    anonymous: u32,
    /// `(code, id)` for every deny reason code.
    denied: Vec<(&'static str, u32)>,
}

impl Metrics {
    fn define() -> Option<Metrics> {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        let mut denied = Vec::new();
        for code in TokenError::CODES.iter().chain(DenyReason::METRICS) {
            denied.push((*code, counter(&format!("tollgate.denied.{code}"))?));
        }
        Some(Metrics {
            allowed: counter("tollgate.allowed")?,
            anonymous: counter("tollgate.anonymous")?,
            denied,
        })
    }

    fn count(id: u32) {
        // A failed metric update must never fail a request.
        let _ = hostcalls::increment_metric(id, 1);
    }

    fn denied(&self, code: &str) {
        if let Some((_, id)) = self.denied.iter().find(|(c, _)| *c == code) {
            Metrics::count(*id);
        }
    }
}

struct Shared {
    config: Config,
    metrics: Metrics,
    revocations: RevocationSet,
    live: LiveVersions,
}

struct Root {
    filter: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = match Config::parse(&bytes, &|name| std::env::var(name).ok()) {
            Ok(config) => config,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let Some(metrics) = Metrics::define() else {
            log::error!("tollgate: could not define metrics");
            return false;
        };
        self.filter = Some(Rc::new(Shared { config, metrics, revocations: RevocationSet::new(), live: LiveVersions::default() }));
        log::info!("configuration accepted");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.filter.clone()?;
        Some(Box::new(Filter { shared }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    shared: Rc<Shared>,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let headers = self.get_http_request_headers();
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str());
        let peer = self
            .get_property(vec!["source", "address"])
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| authenticator::parse_ip(&s));
        let now_ms = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let request = Request { method: header(":method"), path: header(":path"), headers: &headers, peer };

        let Shared { config, metrics, revocations, live } = &*self.shared;
        let knowledge = Knowledge { now_ms, revocations, live };
        match authenticator::decide(config, &request, &knowledge) {
            Decision::Allow(allow) => {
                for op in &allow.header_ops {
                    match op {
                        HeaderOp::Remove(name) => self.set_http_request_header(name, None),
                        HeaderOp::Set(name, value) => self.set_http_request_header(name, Some(value)),
                    }
                }
                Metrics::count(if allow.subject.is_some() { metrics.allowed } else { metrics.anonymous });
                Action::Continue
            }
            Decision::Deny(denial) => {
                metrics.denied(denial.reason.metric());
                let answer = response::render(&config.realm, &denial.reason);
                let headers: Vec<(&str, &str)> = answer.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                self.send_http_response(answer.status as u32, headers, Some(answer.body.as_bytes()));
                Action::Pause
            }
            Decision::CheckVersions(_) | Decision::Refresh(_) => {
                // Not reachable until the callout glue lands: no config enables them.
                let answer = response::render(&config.realm, &DenyReason::Unavailable("authority unavailable"));
                let headers: Vec<(&str, &str)> = answer.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                self.send_http_response(answer.status as u32, headers, Some(answer.body.as_bytes()));
                Action::Pause
            }
        }
    }
}
