//! The token endpoint's answer (`Outcome::from_response`) and what workers
//! share about refreshes (`Slot`, `Shared`).

use super::{ensure, known_members, Check};
use serde_json::Value;
use tollgate::refresh::{hash, Outcome, Shared, Slot, SlotDecision, Tokens, MAX_TOKEN_RESPONSE_BYTES};
use tollgate::token::b64;

/// `Outcome::from_response` on any status and body:
///
/// - the same answer every time; a body over the limit is `Unavailable`;
/// - `Refreshed` only for 200, with both tokens non-empty and exactly the
///   members a generic JSON parser reads from the body;
/// - `Rejected` only for 400/401 whose body's `error` is `invalid_grant`.
pub fn check_token_response(status: Option<u16>, body: &[u8]) -> Check {
    let got = Outcome::from_response(status, body);
    ensure!(got == Outcome::from_response(status, body), "from_response answered twice differently");
    if body.len() > MAX_TOKEN_RESPONSE_BYTES {
        ensure!(got == Outcome::Unavailable, "a body over the limit: {got:?}");
    }
    // The members of the answer the status calls for (RFC 6749 §5.1, §5.2).
    let names: &[&str] = match status {
        Some(200) => &["access_token", "token_type", "expires_in", "refresh_token", "scope"],
        _ => &["error", "error_description"],
    };
    let v = known_members(body, names);
    let member = |name: &str| v.as_ref().and_then(|v| v.get(name));
    match &got {
        Outcome::Refreshed(t) => {
            ensure!(status == Some(200), "Refreshed from status {status:?}");
            ensure!(!t.access_token.is_empty() && !t.refresh_token.is_empty(), "Refreshed with an empty token: {t:?}");
            ensure!(member("access_token").and_then(Value::as_str) == Some(t.access_token.as_str()), "access_token differs from the JSON");
            ensure!(member("refresh_token").and_then(Value::as_str) == Some(t.refresh_token.as_str()), "refresh_token differs from the JSON");
            ensure!(member("expires_in").and_then(Value::as_u64) == Some(t.expires_in), "expires_in differs from the JSON");
        }
        Outcome::Rejected => {
            ensure!(matches!(status, Some(400 | 401)), "Rejected from status {status:?}");
            ensure!(member("error").and_then(Value::as_str) == Some("invalid_grant"), "Rejected without error invalid_grant");
        }
        Outcome::Unavailable => {}
    }
    Ok(())
}

/// Sealing an outcome for the other workers, for `refresh_token`:
///
/// - it opens with that refresh token to the same outcome, and a slot
///   holding it encodes and decodes to itself and is used (or, for a
///   failure, claimed anew) by a request presenting that refresh token;
/// - a token pair is never readable: the sealed text contains neither
///   token, another refresh token opens nothing, and no single-byte change
///   of the sealed bytes opens.
/// The worker deciding (claims name their worker).
const ME: u32 = 7;

pub fn check_seal(outcome: &Outcome, refresh_token: &str, other_token: &str, now_ms: u64, flip: usize) -> Check {
    let sealed = Shared::seal(outcome, refresh_token);
    ensure!(sealed == Shared::seal(outcome, refresh_token), "sealing is not deterministic");
    ensure!(sealed.open(refresh_token).as_ref() == Some(outcome), "sealed {outcome:?} opens to {:?}", sealed.open(refresh_token));
    let slot = Slot::Done { token: hash(refresh_token), outcome: sealed.clone(), until_ms: now_ms.saturating_add(1) };
    ensure!(Slot::decode(&slot.encode()).as_ref() == Some(&slot), "a slot does not read back as itself");
    ensure!(slot.outcome_for(refresh_token, now_ms).as_ref() == Some(outcome), "outcome_for does not give the outcome back");
    let decision = Slot::decide(Some(&slot), refresh_token, now_ms, 30, ME);
    match outcome {
        Outcome::Unavailable => ensure!(matches!(decision, SlotDecision::Claim(_)), "a shared failure answered a new request: {decision:?}"),
        _ => ensure!(decision == SlotDecision::Use(outcome.clone()), "decided {decision:?} on a live answer"),
    }
    if let (Outcome::Refreshed(t), Shared::Refreshed(text)) = (outcome, &sealed) {
        for secret in [&t.access_token, &t.refresh_token] {
            ensure!(secret.len() < 12 || !text.contains(secret.as_str()), "the sealed text shows a token: {secret:?}");
        }
        if other_token != refresh_token {
            ensure!(sealed.open(other_token).is_none(), "another refresh token opens the pair");
            ensure!(slot.outcome_for(other_token, now_ms).is_none(), "another refresh token reads the slot");
        }
        let mut bytes = b64::decode(text.as_bytes()).ok_or("the sealed text is not base64url")?;
        let i = flip % bytes.len();
        bytes[i] ^= 1;
        ensure!(Shared::Refreshed(b64::encode(&bytes)).open(refresh_token).is_none(), "byte {i} of the seal changed and it opens");
    }
    Ok(())
}

/// Any bytes in a shared-data slot (every plugin of the `vm_id` can write
/// there): decoding never panics; what decodes re-encodes to itself; and
/// the decision for `refresh_token` follows the slot: `Use` only from a
/// live answer for this very token that opens to that outcome, `Wait` only
/// on another worker's live claim for it, otherwise a fresh claim of this
/// token by this worker; `claimed_by_other`, `claimed_by` and
/// `holds_answer` agree with that decision.
pub fn check_slot_bytes(bytes: &[u8], refresh_token: &str, now_ms: u64) -> Check {
    let Some(slot) = Slot::decode(bytes) else { return Ok(()) };
    ensure!(Slot::decode(&slot.encode()).as_ref() == Some(&slot), "a decoded slot re-encodes to another: {slot:?}");
    let ours = hash(refresh_token);
    let claim_ms = 30;
    let decision = Slot::decide(Some(&slot), refresh_token, now_ms, claim_ms, ME);
    // The glue's questions agree with the decision.
    let (other, mine, answer) = (slot.claimed_by_other(&ours, now_ms, ME), slot.claimed_by(&ours, now_ms, ME), slot.holds_answer(&ours, now_ms));
    ensure!(!(other && mine), "claimed both by me and by another worker: {slot:?}");
    ensure!(other == (decision == SlotDecision::Wait), "claimed_by_other = {other}, yet decided {decision:?}");
    ensure!(!matches!(decision, SlotDecision::Use(_)) || answer, "used a slot that holds no answer: {slot:?}");
    if answer && matches!(&slot, Slot::Done { outcome, .. } if outcome.open(refresh_token).is_some()) {
        ensure!(matches!(decision, SlotDecision::Use(_)), "a live answer that opens, yet decided {decision:?}");
    }
    match decision {
        SlotDecision::Use(o) => match &slot {
            Slot::Done { token, outcome, until_ms } => {
                ensure!(*token == ours && now_ms < *until_ms, "used a slot of another token or an expired one");
                ensure!(outcome.open(refresh_token).as_ref() == Some(&o), "used {o:?}, the slot opens to something else");
                ensure!(*outcome != Shared::Unavailable, "a shared failure answered a new request");
            }
            Slot::Claimed { .. } => return Err("used the answer of a claim".into()),
        },
        SlotDecision::Wait => {
            ensure!(matches!(&slot, Slot::Claimed { token, until_ms, by } if *token == ours && now_ms < *until_ms && *by != ME), "waits on {slot:?}");
        }
        SlotDecision::Claim(c) => {
            ensure!(c == Slot::Claimed { token: ours.clone(), until_ms: now_ms + claim_ms, by: ME }, "claims {c:?}");
        }
    }
    if let Some(o) = slot.outcome_for(refresh_token, now_ms) {
        ensure!(matches!(&slot, Slot::Done { token, .. } if *token == ours), "outcome_for {o:?} from a slot of another token");
    }
    let _ = slot.is_live(now_ms);
    let _ = slot.is_live_for_other(&ours, now_ms);
    Ok(())
}

/// `Shared::open` on any sealed text never panics, and a text that is not
/// base64url of at least a nonce opens to nothing.
pub fn check_open(text: &str, refresh_token: &str) -> Check {
    let opened = Shared::Refreshed(text.to_owned()).open(refresh_token);
    if b64::decode(text.as_bytes()).is_none_or(|b| b.len() < 24 + 16) {
        ensure!(opened.is_none(), "{text:?} opened to {opened:?}");
    }
    Ok(())
}

/// A token pair, for building outcomes.
pub fn tokens(access: &str, refresh: &str, expires_in: u64) -> Tokens {
    Tokens { access_token: access.into(), refresh_token: refresh.into(), expires_in }
}
