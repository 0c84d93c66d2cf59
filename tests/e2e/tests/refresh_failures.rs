//! Header-mode refresh (API clients: the refresh token in
//! `x-tollgate-refresh-token`, the new pair back in response headers) when
//! the refresh does not happen, end to end on a real Envoy in front of the
//! real authority, behind the fault proxy. What docs/configuration.md
//! ("refresh", "Responses") promises, row by row:
//!
//! - `invalid_grant` → 401 `invalid_token` "token expired and refresh token
//!   rejected", an RFC 6750 challenge, and in header mode no `Set-Cookie`
//!   at all (cookie mode clears both cookies; header mode has none to clear)
//!   and no new pair;
//! - authority unavailable (refusing connections, slower than `timeout_ms`,
//!   answering 5xx) → 503 `temporarily_unavailable` "authority unavailable
//!   for refresh" with `Retry-After: 1` and no challenge when the access
//!   token had expired (or is absent); the request goes on upstream with the
//!   still-valid token (its identity headers, no new pair) when the refresh
//!   was optional (inside `refresh_before_seconds`).
//!
//! Every answer is also checked for what must never be in it (the refresh
//! token, the access token), for the counter of its reason, and — on the
//! Wasm host, whose local replies name their reason — for the response code
//! details in the access log (`tollgate_<reason>`).

use std::time::{Duration, Instant};
use tollgate_e2e::authority::{claims_of, remint, Authority, Settings, Store};
use tollgate_e2e::callouts::{self, api, assert_no_crash, set_cookies, Timing};
use tollgate_e2e::faults::{Fault, FaultProxy};
use tollgate_e2e::host::Host;
use tollgate_e2e::{http, tokens, Envoy, Request, Response};

const TIMEOUT_MS: u64 = 300;
const REFRESH_HEADER: &str = "x-tollgate-refresh-token";
const ACCESS_RESPONSE: &str = "x-tollgate-access-token";
const REFRESH_RESPONSE: &str = "x-tollgate-refresh-token";

/// The access token a row presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Expired an hour ago: the refresh is needed.
    Expired,
    /// Valid for 10 s more, inside `refresh_before_seconds` (30): optional.
    Nearly,
    /// No access token at all, only the refresh header.
    Absent,
}

/// The refresh token a row presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// Never issued by the authority.
    Unknown,
    /// Issued, then revoked by the client (RFC 7009 `POST /v1/revoke`).
    Revoked,
    /// Issued and live: only the authority's availability decides.
    Live,
}

/// What the edge must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Rejected,
    Unavailable,
    /// The request goes upstream with the token it carried.
    PassThrough,
}

struct Row {
    name: &'static str,
    fault: Fault,
    access: Access,
    refresh: Refresh,
    want: Want,
}

fn rows() -> Vec<Row> {
    let slow = Fault::Delay(Duration::from_millis(TIMEOUT_MS + 700));
    let mut rows = vec![
        Row { name: "never-issued refresh token, expired access token", fault: Fault::PassThrough, access: Access::Expired, refresh: Refresh::Unknown, want: Want::Rejected },
        Row { name: "revoked refresh token, expired access token", fault: Fault::PassThrough, access: Access::Expired, refresh: Refresh::Revoked, want: Want::Rejected },
        // (Not a revoked one: revoking the family revokes its access token too.)
        Row { name: "never-issued refresh token, optional refresh", fault: Fault::PassThrough, access: Access::Nearly, refresh: Refresh::Unknown, want: Want::Rejected },
        Row { name: "revoked refresh token, no access token", fault: Fault::PassThrough, access: Access::Absent, refresh: Refresh::Revoked, want: Want::Rejected },
    ];
    for fault in [Fault::Refuse, slow, Fault::Status(503)] {
        rows.push(Row { name: "authority unavailable, expired access token", fault, access: Access::Expired, refresh: Refresh::Live, want: Want::Unavailable });
        rows.push(Row { name: "authority unavailable, no access token", fault, access: Access::Absent, refresh: Refresh::Live, want: Want::Unavailable });
        rows.push(Row { name: "authority unavailable, optional refresh", fault, access: Access::Nearly, refresh: Refresh::Live, want: Want::PassThrough });
    }
    rows
}

fn has_challenge(r: &Response) -> bool {
    r.header("www-authenticate").is_some_and(|c| {
        c.starts_with("Bearer realm=\"tollgate-demo\"")
            && c.contains("error=\"invalid_token\"")
            && c.contains("error_description=\"token expired and refresh token rejected\"")
    })
}

/// Everything wrong with `r` for `row` (empty: as documented).
fn check(row: &Row, r: &Response, presented: Option<&str>, refresh_token: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            wrong.push(what.to_owned());
        }
    };
    let body = || serde_json::from_slice::<serde_json::Value>(&r.body).unwrap_or_default();
    expect(set_cookies(r).is_empty(), "header mode sets or clears no cookie");
    expect(r.header(ACCESS_RESPONSE).is_none() && r.header(REFRESH_RESPONSE).is_none(), "no new pair in the response headers");
    // A local answer repeats no credential; the upstream's echo repeats the
    // access token it was sent, never the refresh token.
    let mut leaks = r.secret_leaks(&[refresh_token.to_owned()], true);
    if row.want != Want::PassThrough {
        leaks.extend(r.secret_leaks(&presented.map(str::to_owned).into_iter().collect::<Vec<_>>(), true));
    }
    expect(leaks.is_empty(), &format!("a credential leaked: {leaks:?}"));
    match row.want {
        Want::Rejected => {
            expect(r.status == 401, "status 401");
            expect(body()["error"] == "invalid_token", "body error invalid_token");
            expect(body()["error_description"] == "token expired and refresh token rejected", "body error_description");
            expect(has_challenge(r), "an RFC 6750 invalid_token challenge");
            expect(r.header("retry-after").is_none(), "no Retry-After on a 401");
        }
        Want::Unavailable => {
            expect(r.status == 503, "status 503");
            expect(body()["error"] == "temporarily_unavailable", "body error temporarily_unavailable");
            expect(body()["error_description"] == "authority unavailable for refresh", "body error_description");
            expect(r.header("retry-after") == Some("1"), "Retry-After: 1");
            expect(r.header("www-authenticate").is_none(), "no challenge on a 503 (not a credentials problem)");
        }
        Want::PassThrough => {
            expect(r.status == 200, "status 200 from the upstream");
            if r.status == 200 {
                let token = presented.unwrap_or_default();
                expect(r.upstream_header("authorization") == [format!("Bearer {token}")], "the token it carried goes upstream");
                expect(r.upstream_header("x-tollgate-sub") == ["alice"], "the identity of that token goes upstream");
                let sid = claims_of(token)["sid"].as_str().unwrap_or_default().to_owned();
                expect(r.upstream_header("x-tollgate-sid") == [sid], "its session goes upstream");
                expect(r.upstream_header(REFRESH_HEADER).is_empty(), "the refresh token never goes upstream");
                let seen = r.text();
                expect(!seen.contains(refresh_token), "the refresh token is nowhere in what the upstream saw");
            }
        }
    }
    wrong
}

fn counters(envoy: &Envoy) -> [u64; 5] {
    [
        envoy.stat("tollgate.denied.refresh_rejected"),
        envoy.stat("tollgate.denied.unavailable"),
        envoy.stat("tollgate.refresh.rejected"),
        envoy.stat("tollgate.refresh.failed"),
        envoy.stat("tollgate.allowed"),
    ]
}

#[test]
fn header_mode_refresh_failures_answer_as_documented() {
    let authority = Authority::start(Store::Sqlite, Settings::default());
    let proxy = FaultProxy::start(authority.addr);
    // A revocation set that stays fresh while the authority is broken: what
    // is tested is the refresh's own failure, not staleness.
    let doc = callouts::document(200, 60_000, TIMEOUT_MS);
    let timing = Timing::of(&doc);
    let bob = authority.mint("bob", "read");
    let envoy = callouts::edge(&doc, proxy.port, &api(&bob), Duration::from_secs(10));
    let now = tokens::now();

    let mut failures = Vec::new();
    let mut details_wanted = Vec::new();
    for (i, row) in rows().iter().enumerate() {
        proxy.set(Fault::PassThrough);
        let login = authority.login_alice();
        let refresh_token = match row.refresh {
            // One per row: a rejection is shared (`share_ms`), and each row's
            // callout is what is counted.
            Refresh::Unknown => format!("tgr_never-issued-by-this-authority-{i:032}"),
            Refresh::Live => login.refresh_token.clone(),
            Refresh::Revoked => {
                let r = authority.post_form("/v1/revoke", &[("token", &login.refresh_token), ("token_type_hint", "refresh_token")]);
                assert_eq!(r.status, 200, "RFC 7009 revoke: {r}");
                assert_eq!(authority.refresh(&login.refresh_token).status, 400, "the revoked refresh token is refused at the authority");
                login.refresh_token.clone()
            }
        };
        let presented = match row.access {
            Access::Expired => Some(remint(&login.access_token, now - 3600, now - 4500)),
            Access::Nearly => Some(remint(&login.access_token, tokens::now() + 10, now - 600)),
            Access::Absent => None,
        };
        let path = format!("/api/items/row-{i}");
        let mut req = Request::get(&path).header(REFRESH_HEADER, &refresh_token).secret(&refresh_token);
        if let Some(t) = &presented {
            req = req.bearer(t);
        }
        proxy.set(row.fault);
        let before = counters(&envoy);
        let started = Instant::now();
        let answer = http::send(envoy.listener, &req);
        let took = started.elapsed();
        proxy.set(Fault::PassThrough);
        let after = counters(&envoy);
        let label = format!("row {i} [{:?}] {}", row.fault, row.name);
        let r = match answer {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("✗ {label}: no answer after {took:?}: {e}"));
                continue;
            }
        };
        let mut wrong = check(row, &r, presented.as_deref(), &refresh_token);
        if took > timing.callout_bound() {
            wrong.push(format!("answered after {took:?} > {:?}", timing.callout_bound()));
        }
        // Counted as what it was: [denied.refresh_rejected,
        // denied.unavailable, refresh.rejected, refresh.failed, allowed].
        let grew: Vec<bool> = before.iter().zip(after).map(|(b, a)| a > *b).collect();
        let want_grew = match row.want {
            Want::Rejected => [true, false, true, false, false],
            Want::Unavailable => [false, true, false, true, false],
            Want::PassThrough => [false, false, false, true, true],
        };
        if grew != want_grew {
            wrong.push(format!("counters [denied.refresh_rejected, denied.unavailable, refresh.rejected, refresh.failed, allowed] grew {grew:?}, want {want_grew:?}"));
        }
        let details = match row.want {
            Want::Rejected => "tollgate_refresh_rejected",
            Want::Unavailable => "tollgate_unavailable",
            Want::PassThrough => "via_upstream",
        };
        details_wanted.push((path, details, label.clone()));
        if !wrong.is_empty() {
            failures.push(format!("✗ {label}: {}\n    got {}", wrong.join("; "), r.to_string().chars().take(600).collect::<String>()));
        } else {
            eprintln!("✓ {label}: {} in {took:?}", r.status);
        }
    }

    let log = envoy.stop();
    assert_no_crash(&log);
    // The reason of each local reply, as the access log shows it.
    let lines: Vec<serde_json::Value> =
        log.lines().filter(|l| l.starts_with('{') && l.contains("\"details\"")).filter_map(|l| serde_json::from_str(l).ok()).collect();
    for (path, details, label) in &details_wanted {
        let line = lines.iter().find(|l| l["path"] == path.as_str());
        let Some(line) = line else {
            failures.push(format!("✗ {label}: no access-log line for {path}"));
            continue;
        };
        let want = match (Host::selected(), *details) {
            // The native module names every local reply alike.
            (Host::Native, "via_upstream") => "via_upstream",
            (Host::Native, _) => "tollgate_local_reply",
            (Host::Wasm, d) => d,
        };
        if line["details"] != want {
            failures.push(format!("✗ {label}: response code details {} , want {want}", line["details"]));
        }
    }
    assert!(failures.is_empty(), "header-mode refresh failures not answered as documented:\n{}", failures.join("\n"));
}
