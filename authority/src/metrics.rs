//! The authority's Prometheus metrics, through the `prometheus-client`
//! crate (OpenMetrics text). Every metric name is defined here, once
//! ([`names`]); docs/operations.md lists them and the alert rules and the
//! dashboard in deploy/monitoring/ query them (the e2e test
//! `tests/e2e/tests/metrics.rs` checks that each name they use is exported).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Metric family names. Counters are exposed with `_total` appended
/// (`tollgate_authority_grants_total`), histograms as `_bucket`, `_sum` and
/// `_count`, the info metric as `_info`.
pub mod names {
    pub const BUILD: &str = "tollgate_authority_build";
    pub const GRANTS: &str = "tollgate_authority_grants";
    pub const TOKEN_REQUEST_DURATION: &str = "tollgate_authority_token_request_duration_seconds";
    pub const THROTTLED: &str = "tollgate_authority_throttled";
    pub const EDGE_AUTH: &str = "tollgate_authority_edge_auth";
    pub const REFRESH: &str = "tollgate_authority_refresh";
    pub const REFRESH_CONFLICTS: &str = "tollgate_authority_refresh_conflicts";
    pub const VERSION_BUMPS: &str = "tollgate_authority_version_bumps";
    pub const FEED_REQUESTS: &str = "tollgate_authority_feed_requests";
    pub const FEED_CURSOR_REJECTED: &str = "tollgate_authority_feed_cursor_rejected";
    pub const FEED_ANSWERS: &str = "tollgate_authority_feed_answers";
    pub const FEED_DELIVERY_LAG: &str = "tollgate_authority_feed_delivery_lag_seconds";
    pub const FEED_HELD: &str = "tollgate_authority_feed_held_requests";
    pub const FEED_WAKEUPS: &str = "tollgate_authority_feed_wakeups";
    pub const FEED_LISTENER_UP: &str = "tollgate_authority_feed_listener_up";
    pub const STORE_DURATION: &str = "tollgate_authority_store_operation_duration_seconds";
    pub const STORE_ERRORS: &str = "tollgate_authority_store_errors";
}

/// The kinds of feed answers: a snapshot, a delta with entries, a delta
/// without (nothing changed), 410 (re-snapshot), 503.
pub const FEED_ANSWER_KINDS: [&str; 5] = ["snapshot", "delta", "empty", "gone", "unavailable"];

/// Grant types as labels: the three the token endpoint serves, and `other`
/// (unsupported, missing, or a request refused before its grant was read).
pub const GRANT_TYPES: [&str; 4] = ["password", "client_credentials", "refresh_token", "other"];

/// The `grant_type` label of a token request's `grant_type` parameter.
pub fn grant_type_label(grant_type: Option<&str>) -> &'static str {
    match grant_type {
        Some("password") => "password",
        Some("client_credentials") => "client_credentials",
        Some("refresh_token") => "refresh_token",
        _ => "other",
    }
}

/// What became of one refresh-token presentation (`outcome` label):
/// rotated (a new pair), replayed inside the grace window (the same pair
/// again), reuse detected (after the window: the family is revoked),
/// rejected (`invalid_grant`: unknown, expired, revoked), conflict (gave up
/// after losing every compare-and-set round to concurrent writers: 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    Rotated,
    ReplayedInGrace,
    ReuseDetected,
    Rejected,
    Conflict,
}

impl RefreshOutcome {
    pub const ALL: [RefreshOutcome; 5] = [
        RefreshOutcome::Rotated,
        RefreshOutcome::ReplayedInGrace,
        RefreshOutcome::ReuseDetected,
        RefreshOutcome::Rejected,
        RefreshOutcome::Conflict,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RefreshOutcome::Rotated => "rotated",
            RefreshOutcome::ReplayedInGrace => "replayed_in_grace",
            RefreshOutcome::ReuseDetected => "reuse_detected",
            RefreshOutcome::Rejected => "rejected",
            RefreshOutcome::Conflict => "conflict",
        }
    }
}

/// The store operations the service times (`op` label), pre-created so
/// dashboards see every series from the start.
pub const STORE_OPS: [&str; 9] = [
    "ping",
    "raise_ttl_max",
    "create_family",
    "load_refresh",
    "apply_rotation",
    "bump",
    "feed",
    "versions",
    "create_api_token",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    grant_type: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantTypeLabel {
    grant_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThrottleLabels {
    grant_type: &'static str,
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    store: &'static str,
}

fn token_histogram() -> Histogram {
    // argon2 password checks take tens of milliseconds; queueing for a
    // hash slot can take seconds (hash_wait_ms).
    Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

fn store_histogram() -> Histogram {
    Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
}

/// The gauges other modules keep as plain atomics ([`Metrics::feed_held`],
/// [`Metrics::feed_listener_up`]), read at scrape time.
#[derive(Debug)]
struct FeedGauges {
    held: Arc<AtomicU64>,
    listener_up: Arc<AtomicI64>,
}

impl Collector for FeedGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let held = ConstGauge::new(i64::try_from(self.held.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        let e = encoder.encode_descriptor(names::FEED_HELD, "Feed requests held (long polling) right now.", None, held.metric_type())?;
        held.encode(e)?;
        let up = self.listener_up.load(Ordering::Relaxed);
        // -1: the store has no notification channel (the embedded store).
        if up >= 0 {
            let up = ConstGauge::new(up);
            let e = encoder.encode_descriptor(
                names::FEED_LISTENER_UP,
                "Whether this instance is subscribed to the store's bump notifications (Redis pub/sub).",
                None,
                up.metric_type(),
            )?;
            up.encode(e)?;
        }
        Ok(())
    }
}

pub struct Metrics {
    registry: Registry,
    grants: Family<GrantLabels, Counter>,
    token_duration: Family<GrantTypeLabel, Histogram, fn() -> Histogram>,
    throttled: Family<ThrottleLabels, Counter>,
    edge_auth: Family<ResultLabel, Counter>,
    refresh: Family<OutcomeLabel, Counter>,
    refresh_conflicts: Counter,
    bumps: Family<KindLabel, Counter>,
    feed_requests: Counter,
    feed_cursor_rejected: Counter,
    feed_answers: Family<KindLabel, Counter>,
    feed_delivery_lag: Histogram,
    feed_wakeups: Family<CauseLabel, Counter>,
    store_duration: Family<OpLabel, Histogram, fn() -> Histogram>,
    store_errors: Family<OpLabel, Counter>,
    /// Feed requests held right now (long polling).
    pub feed_held: Arc<AtomicU64>,
    /// Whether the store's bump notifications are subscribed: 1 yes, 0 no,
    /// -1 the store has none (not exported).
    pub feed_listener_up: Arc<AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new("none")
    }
}

impl Metrics {
    /// The metrics of an authority on a `store` (its kind, for build info).
    pub fn new(store: &'static str) -> Metrics {
        let mut registry = Registry::default();
        let grants = Family::<GrantLabels, Counter>::default();
        let token_duration = Family::<GrantTypeLabel, Histogram, fn() -> Histogram>::new_with_constructor(token_histogram);
        let throttled = Family::<ThrottleLabels, Counter>::default();
        let edge_auth = Family::<ResultLabel, Counter>::default();
        let refresh = Family::<OutcomeLabel, Counter>::default();
        let refresh_conflicts = Counter::default();
        let bumps = Family::<KindLabel, Counter>::default();
        let feed_requests = Counter::default();
        let feed_cursor_rejected = Counter::default();
        let feed_answers = Family::<KindLabel, Counter>::default();
        let feed_delivery_lag =
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]);
        let feed_wakeups = Family::<CauseLabel, Counter>::default();
        let store_duration = Family::<OpLabel, Histogram, fn() -> Histogram>::new_with_constructor(store_histogram);
        let store_errors = Family::<OpLabel, Counter>::default();
        let feed_held = Arc::new(AtomicU64::new(0));
        let feed_listener_up = Arc::new(AtomicI64::new(-1));

        // Series every dashboard panel and alert reads exist from the start.
        for g in GRANT_TYPES {
            let _ = token_duration.get_or_create(&GrantTypeLabel { grant_type: g });
        }
        for o in RefreshOutcome::ALL {
            let _ = refresh.get_or_create(&OutcomeLabel { outcome: o.label() });
        }
        for kind in ["sub", "sid"] {
            let _ = bumps.get_or_create(&KindLabel { kind });
        }
        for kind in FEED_ANSWER_KINDS {
            let _ = feed_answers.get_or_create(&KindLabel { kind });
        }
        for cause in crate::longpoll::Wake::ALL {
            let _ = feed_wakeups.get_or_create(&CauseLabel { cause: cause.label() });
        }
        for op in STORE_OPS {
            let _ = store_duration.get_or_create(&OpLabel { op });
            let _ = store_errors.get_or_create(&OpLabel { op });
        }

        registry.register(
            names::BUILD,
            "The authority's version and store kind (always 1).",
            Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION"), store }),
        );
        registry.register(
            names::GRANTS,
            "Token endpoint answers by grant type and result (ok or an OAuth error code).",
            grants.clone(),
        );
        registry.register(
            names::TOKEN_REQUEST_DURATION,
            "Token endpoint latency, from the request to the answer, by grant type.",
            token_duration.clone(),
        );
        registry.register(
            names::THROTTLED,
            "Credential grants refused 429 slow_down, by grant type and the budget that refused.",
            throttled.clone(),
        );
        registry.register(names::EDGE_AUTH, "Edge-endpoint requests by edge-credential result.", edge_auth.clone());
        registry.register(
            names::REFRESH,
            "Refresh-token presentations by outcome: rotated, replayed_in_grace, reuse_detected, rejected (invalid_grant), conflict (gave up after concurrent writers won every round).",
            refresh.clone(),
        );
        registry.register(
            names::REFRESH_CONFLICTS,
            "Refresh compare-and-set rounds lost to a concurrent writer (each is retried).",
            refresh_conflicts.clone(),
        );
        registry.register(names::VERSION_BUMPS, "Version bumps by key kind.", bumps.clone());
        registry.register(names::FEED_REQUESTS, "Revocation feed requests.", feed_requests.clone());
        registry.register(
            names::FEED_CURSOR_REJECTED,
            "Feed requests answered 410 (re-snapshot).",
            feed_cursor_rejected.clone(),
        );
        registry.register(
            names::FEED_ANSWERS,
            "Feed answers by kind: snapshot, delta (with entries), empty (nothing newer than the cursor), gone (410), unavailable (503).",
            feed_answers.clone(),
        );
        registry.register(
            names::FEED_DELIVERY_LAG,
            "For each delta answer with entries: the time from its newest bump to the answer (how long a revocation took to reach an edge).",
            feed_delivery_lag.clone(),
        );
        registry.register(
            names::FEED_WAKEUPS,
            "Held feed requests answered, by what ended the wait (limit: answered at once, the instance held feed_max_held already).",
            feed_wakeups.clone(),
        );
        registry.register(
            names::STORE_DURATION,
            "Store operation latency by operation (errors included).",
            store_duration.clone(),
        );
        registry.register(names::STORE_ERRORS, "Store operations that failed, by operation.", store_errors.clone());
        registry.register_collector(Box::new(FeedGauges { held: feed_held.clone(), listener_up: feed_listener_up.clone() }));

        Metrics {
            registry,
            grants,
            token_duration,
            throttled,
            edge_auth,
            refresh,
            refresh_conflicts,
            bumps,
            feed_requests,
            feed_cursor_rejected,
            feed_answers,
            feed_delivery_lag,
            feed_wakeups,
            store_duration,
            store_errors,
            feed_held,
            feed_listener_up,
        }
    }

    pub fn grant(&self, grant_type: &'static str, result: &'static str) {
        self.grants.get_or_create(&GrantLabels { grant_type, result }).inc();
    }

    /// A token-endpoint answer after `took`, `grant_type` from [`grant_type_label`].
    pub fn token_request(&self, grant_type: &'static str, took: Duration) {
        self.token_duration.get_or_create(&GrantTypeLabel { grant_type }).observe(took.as_secs_f64());
    }

    pub fn throttled(&self, grant_type: &'static str, limit: &'static str) {
        self.throttled.get_or_create(&ThrottleLabels { grant_type, limit }).inc();
    }

    pub fn edge_auth(&self, result: &'static str) {
        self.edge_auth.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn refresh(&self, outcome: RefreshOutcome) {
        self.refresh.get_or_create(&OutcomeLabel { outcome: outcome.label() }).inc();
    }

    /// A refresh round lost its compare-and-set to a concurrent writer.
    pub fn refresh_conflict(&self) {
        self.refresh_conflicts.inc();
    }

    pub fn bump(&self, kind: &'static str) {
        self.bumps.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn feed_request(&self) {
        self.feed_requests.inc();
    }

    /// A held feed request was answered (or not held) for `cause`.
    pub fn feed_wakeup(&self, cause: crate::longpoll::Wake) {
        self.feed_wakeups.get_or_create(&CauseLabel { cause: cause.label() }).inc();
    }

    /// A feed answer of `kind` (one of [`FEED_ANSWER_KINDS`]).
    pub fn feed_answer(&self, kind: &'static str) {
        if kind == "gone" {
            self.feed_cursor_rejected.inc();
        }
        self.feed_answers.get_or_create(&KindLabel { kind }).inc();
    }

    /// A delta with entries was answered `lag` after its newest bump.
    pub fn feed_delivered(&self, lag: Duration) {
        self.feed_delivery_lag.observe(lag.as_secs_f64());
    }

    pub fn store_op(&self, op: &'static str, took: Duration, ok: bool) {
        self.store_duration.get_or_create(&OpLabel { op }).observe(took.as_secs_f64());
        if !ok {
            self.store_errors.get_or_create(&OpLabel { op }).inc();
        }
    }

    /// The OpenMetrics text exposition (serve it as [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String does not fail; a label encoder could.
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family is exported under its name from [`names`] with HELP
    /// and TYPE once, and the text ends with `# EOF` (OpenMetrics).
    #[test]
    fn exposition_names_every_family_once() {
        let m = Metrics::new("sqlite");
        m.feed_listener_up.store(1, Ordering::Relaxed);
        m.grant("password", "ok");
        let text = m.render();
        for (name, ty) in [
            (names::BUILD, "info"),
            (names::GRANTS, "counter"),
            (names::TOKEN_REQUEST_DURATION, "histogram"),
            (names::THROTTLED, "counter"),
            (names::EDGE_AUTH, "counter"),
            (names::REFRESH, "counter"),
            (names::REFRESH_CONFLICTS, "counter"),
            (names::VERSION_BUMPS, "counter"),
            (names::FEED_REQUESTS, "counter"),
            (names::FEED_CURSOR_REJECTED, "counter"),
            (names::FEED_ANSWERS, "counter"),
            (names::FEED_DELIVERY_LAG, "histogram"),
            (names::FEED_HELD, "gauge"),
            (names::FEED_WAKEUPS, "counter"),
            (names::FEED_LISTENER_UP, "gauge"),
            (names::STORE_DURATION, "histogram"),
            (names::STORE_ERRORS, "counter"),
        ] {
            let type_line = format!("# TYPE {name} {ty}\n");
            assert_eq!(text.matches(&type_line).count(), 1, "{type_line:?} once in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        let build = format!("tollgate_authority_build_info{{version=\"{}\",store=\"sqlite\"}} 1\n", env!("CARGO_PKG_VERSION"));
        assert!(text.contains(&build), "{text}");
        assert!(text.contains("tollgate_authority_grants_total{grant_type=\"password\",result=\"ok\"} 1\n"), "{text}");
        assert!(!Metrics::new("sqlite").render().contains(names::FEED_LISTENER_UP), "no listener gauge without a channel");
    }

    #[test]
    fn grant_type_labels_table() {
        for (given, want) in [
            (Some("password"), "password"),
            (Some("client_credentials"), "client_credentials"),
            (Some("refresh_token"), "refresh_token"),
            (Some("urn:ietf:params:oauth:grant-type:device_code"), "other"),
            (Some(""), "other"),
            (None, "other"),
        ] {
            assert_eq!(grant_type_label(given), want, "{given:?}");
        }
    }
}
