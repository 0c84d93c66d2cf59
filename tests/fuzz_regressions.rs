//! Regression cases found by fuzzing (`scripts/fuzz.sh`, `fuzz/`).
//!
//! Each row is an input a fuzz target once failed on, written out as the
//! target's structured input, and re-checked two ways: with the very
//! property the target asserts (`fuzz/src/properties/`, included below, so
//! there is one definition of each property), and against the exact answer
//! expected now. A row whose `fix` names `src/` records a defect found in the
//! core; the others record where the fuzzer showed a property too strict
//! and what the core's behaviour is, so it stays deliberate.
//!
//! Runs natively and, through the import below, under wasm-bindgen-test on
//! wasm32-unknown-unknown (`scripts/test-wasm-core.sh`): no file is read,
//! every input is inline.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[path = "../fuzz/src/properties/mod.rs"]
mod properties;

use properties::Check;
use tollgate::refresh::Outcome;

/// One finding: the target, what failed, where the fix belongs, and the
/// check (the target's property, then the expected answer).
struct Row {
    target: &'static str,
    found: &'static str,
    fix: &'static str,
    check: fn() -> Check,
}

fn expect<T: PartialEq + std::fmt::Debug>(got: T, want: T) -> Check {
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got:?}, want {want:?}"))
    }
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            target: "token_verify",
            found: "a token signed under k1 (HS256) with a long `sub`, just under max_token_bytes, verified; the property then \
                    re-minted its claims under k3 (HS512, a signature 43 characters longer) and wanted them back, \
                    but that token was over max_token_bytes and refused as TooLarge, as it should be. The \
                    property now wants TooLarge for a re-mint over the limit",
            fix: "fuzz/src/properties/token.rs check_claims (the property was too strict)",
            check: || {
                use properties::token::{check_signed, KeySetup, AUDIENCES, ISS, MAX_TOKEN_BYTES, NOW};
                use tollgate::token::TimeCheck;
                let header = br#"{"alg":"HS256","kid":"k1","typ":"at+jwt"}"#;
                // A `sub` that puts the HS256 token 20 bytes under the limit:
                // the HS512 re-mint is 43 over it.
                let payload = |sub: &str| {
                    format!(r#"{{"iss":"{ISS}","sub":"{sub}","aud":"{}","exp":{},"ver":1}}"#, AUDIENCES[0], NOW + 600).into_bytes()
                };
                let base = tollgate::token::b64::encode(header).len() + 1 + tollgate::token::b64::encode(&payload("")).len() + 1 + 43;
                let sub = "a".repeat((MAX_TOKEN_BYTES - 20 - base) * 3 / 4);
                let fits = tollgate::token::b64::encode(header).len() + 1 + tollgate::token::b64::encode(&payload(&sub)).len() + 1 + 43;
                expect(fits <= MAX_TOKEN_BYTES && fits + 43 > MAX_TOKEN_BYTES, true)?;
                check_signed(KeySetup::Rotation, 0, header, &payload(&sub), TimeCheck::At(NOW))
            },
        },
        Row {
            target: "refresh",
            found: "a 200 token answer with invalid UTF-8 inside `token_type` was Refreshed while the edge \
                    ignored that member (serde_json skips UTF-8 validation of members it ignores). The edge now \
                    reads the answer as the protocol module's TokenAnswer, which has `token_type`: such a body \
                    is garbage, the authority never sends it, and it is refused (Unavailable)",
            fix: "src/protocol.rs TokenAnswer",
            check: || {
                let body = b"{\"access_token\":\"a2\",\"refresh_token\":\"r2\",\"expires_in\":900,\"token_type\":\"B\xffarer\"}";
                properties::refresh::check_token_response(Some(200), body)?;
                expect(Outcome::from_response(Some(200), body), Outcome::Unavailable)
            },
        },
        Row {
            target: "revocation",
            found: "a shared revocation set (proxy-wasm shared data, writable by every plugin of the vm_id) \
                    holding generation u64::MAX, then any feed page that changes the set: `generation += 1` \
                    overflows: a panic in any build with overflow checks (cargo test, debug filter builds), a \
                    silent wrap in release. The generation is compared for change, never ordered",
            fix: "src/revocation.rs: `self.generation = self.generation.wrapping_add(1)` in apply and forget_cursor",
            check: || {
                use properties::revocation::{check_steps, Step};
                let shared = br#"{"g":18446744073709551615,"c":null,"t":null,"f":0,"s":null,"e":[]}"#;
                let feed = br#"{"snapshot":true,"entries":[],"cursor":"c"}"#;
                check_steps(&[Step::Shared { bytes: shared.to_vec() }, Step::Body { body: feed.to_vec(), now_ms: 5 }])?;
                check_steps(&[Step::Shared { bytes: shared.to_vec() }, Step::ForgetCursor])?;
                let mut set = tollgate::revocation::RevocationSet::decode(shared).ok_or("decodes")?;
                set.apply(tollgate::revocation::FeedPage::parse(feed).map_err(|e| format!("{e:?}"))?, 5);
                expect(set.generation(), 0)
            },
        },
        Row {
            target: "revocation",
            found: "a feed page with an unknown member holding a number beyond f64 (`\"x\":101E4001`) parses: \
                    serde skips members a struct does not read without checking number range (nor UTF-8). \
                    Harmless: nothing read depends on them. The property's oracle now reads only the members \
                    the page reads, skipping the others the same way. Since the wire readers walk a parsed tree \
                    (issue 11, module size) the whole body must be JSON RFC 8259 §8.1 exchanges: the page is \
                    refused, which the property allows (a refused page changes nothing)",
            fix: "none (property); the reader checks unread members too",
            check: || {
                use properties::revocation::{check_steps, Step};
                let body = br#"{"snapshot":true,"entries":[{"key":"sub:a","min_ver":2,"expires_at":null}],"cursor":"new.0","store":"s","x":101E4001}"#;
                check_steps(&[Step::Body { body: body.to_vec(), now_ms: 2000 }])?;
                expect(tollgate::revocation::FeedPage::parse(body), Err(tollgate::revocation::FeedError::NotJson))
            },
        },
        Row {
            target: "canonical_path",
            found: "\"/ſ*s\" (U+017F, long s) is refused as CaseFolding by the filter, which the property's \
                    independent model of the strict path rules did not know yet: a gap in the model, not in the \
                    filter (Python's re.I and Java's case-insensitive matching fold ſ to s)",
            fix: "fuzz/src/properties/request.rs: the model refuses the letters that fold to ASCII",
            check: || {
                use tollgate::request::{canonical_path, PathError};
                properties::request::check_canonical_path("/\u{17f}*s")?;
                expect(canonical_path("/\u{17f}*s"), Err(PathError::CaseFolding))?;
                expect(properties::request::model_path("/\u{17f}*s"), None)
            },
        },
        Row {
            target: "config",
            found: "the inline secret `\"not \"` shows in its own refusal, `is not base64url`: the property's \
                    differential check replaced the secret with `AAAA`, valid base64url, whose refusal differs \
                    (too short) and so lacks the words. A false alarm; the replacement now keeps the secret's \
                    validity (base64url letters moved 16 places, everything else kept)",
            fix: "none (property)",
            check: || {
                let doc = br#"{"issuer":"i","audiences":["a"],"keys":[{"alg":"HS256","secret":"not "}]}"#;
                properties::config::check_config(doc)?;
                let err = tollgate::config::Config::parse(doc, &properties::config::env).err().ok_or("accepted")?;
                expect((err.field.as_str(), err.message.as_str()), ("keys[0].secret", "is not base64url"))
            },
        },
    ]
}

/// Runs one row; natively a panic is that row's failure, not the test's end.
fn run(row: &Row) -> Check {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let check = row.check;
        std::panic::catch_unwind(check).unwrap_or_else(|p| {
            let why = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
            Err(format!("panicked: {}", why.unwrap_or_default()))
        })
    }
    #[cfg(target_arch = "wasm32")]
    {
        (row.check)()
    }
}

#[test]
fn every_finding_stays_fixed() {
    let rows = rows();
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|r| run(r).err().map(|e| format!("[{}] {} (fix: {}): {e}", r.target, r.found, r.fix)))
        .collect();
    assert!(failures.is_empty(), "{} of {} rows fail:\n{}", failures.len(), rows.len(), failures.join("\n"));
}
