//! The refresh coordinator: at most one refresh callout per refresh token on
//! a worker, and, through a shared-data slot, per Envoy instance.
//!
//! Pure state machines; the glue carries out what they return:
//! - [`Coordinator`] groups the requests of one worker that wait on the same
//!   refresh token: the first leads (makes the callout), the rest follow and
//!   are resumed from the leader's answer. Every group has a deadline, so a
//!   leader that vanished (client gone, callout lost) never strands them.
//! - [`Slot`] is what workers share: a claim ("worker N is refreshing this
//!   token until T") and then the answer, kept for the grace window only.
//!   Refresh tokens are never stored: groups and slots hold a SHA-256.
//!   A new token pair is never stored in clear either: shared data is
//!   readable by every plugin of the same `vm_id`, so the pair is sealed
//!   ([`Shared::seal`], XChaCha20-Poly1305) under a key derived from the
//!   refresh token it answers. Only a request that presents that refresh
//!   token can open it, and the slot's name and token hash reveal nothing.

use crate::protocol::{ErrorAnswer, TokenAnswer, INVALID_GRANT};
use crate::token::json::{self, Members, ObjectWriter, Value};
use sha2::{Digest, Sha256};
use crate::sorted_map::SortedMap;

/// SHA-256 of a refresh token, hex.
pub type TokenHash = String;

pub fn hash(refresh_token: &str) -> TokenHash {
    let digest = Sha256::digest(refresh_token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// What a refresh yields: the new pair (read from a
/// [`TokenAnswer`](crate::protocol::TokenAnswer) that carries a refresh token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
}

impl Tokens {
    /// The sealed plaintext: `{"access_token":…,"refresh_token":…,"expires_in":…}`.
    fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        let mut o = ObjectWriter::new(&mut out);
        o.str("access_token", &self.access_token).str("refresh_token", &self.refresh_token).u64("expires_in", self.expires_in);
        o.end();
        out.into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Tokens> {
        let doc = json::parse(bytes).ok()?;
        let m = Members::of(&doc)?;
        Some(Tokens { access_token: m.string("access_token")?, refresh_token: m.string("refresh_token")?, expires_in: m.u64("expires_in")? })
    }
}

/// How a refresh ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Refreshed(Tokens),
    /// `invalid_grant`: the refresh token is dead (expired, reused, revoked).
    Rejected,
    /// The authority could not answer: down, timeout, 5xx, garbage.
    Unavailable,
}

/// The most a token-endpoint body may be.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 16 << 10;

impl Outcome {
    /// Reads the authority's answer to `grant_type=refresh_token`.
    pub fn from_response(status: Option<u16>, body: &[u8]) -> Outcome {
        if body.len() > MAX_TOKEN_RESPONSE_BYTES {
            return Outcome::Unavailable;
        }
        match status {
            Some(200) => match TokenAnswer::parse(body) {
                Some(TokenAnswer { access_token, refresh_token: Some(refresh_token), expires_in, .. })
                    if !access_token.is_empty() && !refresh_token.is_empty() =>
                {
                    Outcome::Refreshed(Tokens { access_token, refresh_token, expires_in })
                }
                _ => Outcome::Unavailable,
            },
            Some(400) | Some(401) => match ErrorAnswer::parse(body) {
                Some(e) if e.error == INVALID_GRANT => Outcome::Rejected,
                _ => Outcome::Unavailable,
            },
            _ => Outcome::Unavailable,
        }
    }
}

/// The form body of `POST /v1/token` for a refresh (RFC 6749 §6).
pub fn token_request_body(refresh_token: &str, client_id: &str) -> String {
    format!(
        "grant_type=refresh_token&refresh_token={}&client_id={}",
        form_encode(refresh_token),
        form_encode(client_id)
    )
}

/// `application/x-www-form-urlencoded` for one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// What a request should do about its refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// Make the callout; others will wait on you.
    Lead,
    /// Wait: another request of this worker is refreshing the same token.
    Follow,
}

#[derive(Debug)]
struct Group {
    leader: Option<u32>,
    followers: Vec<u32>,
    deadline_ms: u64,
}

/// Per-worker grouping of requests waiting on one refresh token.
#[derive(Debug, Default)]
pub struct Coordinator {
    groups: SortedMap<TokenHash, Box<Group>>,
}

impl Coordinator {
    pub fn new() -> Coordinator {
        Coordinator::default()
    }

    /// Request `ctx` needs `token` refreshed.
    pub fn join(&mut self, token: &TokenHash, ctx: u32, now_ms: u64, wait_ms: u64) -> Join {
        match self.groups.get_mut(token) {
            Some(g) => {
                g.followers.push(ctx);
                Join::Follow
            }
            None => {
                let g = Box::new(Group { leader: Some(ctx), followers: Vec::new(), deadline_ms: now_ms + wait_ms });
                self.groups.insert(token.clone(), g);
                Join::Lead
            }
        }
    }

    pub fn has_group(&self, token: &TokenHash) -> bool {
        self.groups.contains_key(token)
    }

    /// A request waiting on the group (as a follower, not yet leading) whose
    /// callout is made elsewhere (another worker's, per the shared slot).
    pub fn wait_elsewhere(&mut self, token: &TokenHash, ctx: u32, now_ms: u64, wait_ms: u64) {
        self.groups
            .get_or_insert_with(token.clone(), || Box::new(Group { leader: None, followers: Vec::new(), deadline_ms: now_ms + wait_ms }))
            .followers
            .push(ctx);
    }

    /// The refresh of `token` ended: every request of the group, leader first.
    pub fn finish(&mut self, token: &TokenHash) -> Vec<u32> {
        match self.groups.remove(token) {
            Some(g) => g.leader.into_iter().chain(g.followers).collect(),
            None => Vec::new(),
        }
    }

    /// Moves the deadline of `token`'s group to `deadline_ms`.
    pub fn extend(&mut self, token: &TokenHash, deadline_ms: u64) {
        if let Some(g) = self.groups.get_mut(token) {
            g.deadline_ms = deadline_ms;
        }
    }

    /// Groups waiting on another worker's refresh: their hashes and one
    /// request of each (whose refresh token opens the shared answer).
    pub fn waiting_elsewhere(&self) -> Vec<(TokenHash, u32)> {
        self.groups
            .iter()
            .filter(|(_, g)| g.leader.is_none())
            .filter_map(|(h, g)| Some((h.clone(), *g.followers.first()?)))
            .collect()
    }

    /// Groups past their deadline, removed, with their requests.
    pub fn overdue(&mut self, now_ms: u64) -> Vec<(TokenHash, Vec<u32>)> {
        let late: Vec<TokenHash> =
            self.groups.iter().filter(|(_, g)| now_ms >= g.deadline_ms).map(|(h, _)| h.clone()).collect();
        late.into_iter().map(|h| { let ids = self.finish(&h); (h, ids) }).collect()
    }

    /// Request `ctx` is gone (its stream ended). A group that loses its
    /// leader is due at once: the answer to the leader's callout goes to a
    /// context that no longer exists, so its followers must not wait for it.
    pub fn leave(&mut self, ctx: u32) {
        self.groups.retain(|_, g| {
            if g.leader == Some(ctx) {
                g.leader = None;
                g.deadline_ms = 0;
            }
            g.followers.retain(|&f| f != ctx);
            g.leader.is_some() || !g.followers.is_empty()
        });
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// An outcome as workers share it: a new token pair sealed under a key
/// derived from the refresh token it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// base64url of nonce ‖ ciphertext of the [`Tokens`] as JSON.
    Refreshed(String),
    Rejected,
    Unavailable,
}

/// Domain-separated derivations from a refresh token: the seal key is not
/// the [`hash`] that names the slot.
fn seal_key(refresh_token: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"tollgate/refresh-seal/v1\0")
        .chain_update(refresh_token.as_bytes())
        .finalize()
        .into()
}

impl Shared {
    /// The shareable form of `outcome`. The nonce is synthetic (a hash of key
    /// and plaintext): two seals collide only for the same pair under the
    /// same key, so no randomness is needed and the engine stays pure.
    pub fn seal(outcome: &Outcome, refresh_token: &str) -> Shared {
        use chacha20poly1305::aead::{Aead, KeyInit};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        match outcome {
            Outcome::Rejected => Shared::Rejected,
            Outcome::Unavailable => Shared::Unavailable,
            Outcome::Refreshed(tokens) => {
                let key = seal_key(refresh_token);
                let plain = tokens.encode();
                let digest = Sha256::new().chain_update(b"nonce").chain_update(key).chain_update(&plain).finalize();
                let nonce = XNonce::from_slice(&digest[..24]);
                let cipher = XChaCha20Poly1305::new((&key).into());
                // Encryption into a Vec fails only on allocation limits; an
                // empty seal then opens to nothing and the request retries.
                let sealed = cipher.encrypt(nonce, plain.as_slice()).unwrap_or_default();
                let mut out = nonce.to_vec();
                out.extend_from_slice(&sealed);
                Shared::Refreshed(crate::token::b64::encode(&out))
            }
        }
    }

    /// The outcome, when `refresh_token` is the one it answers.
    pub fn open(&self, refresh_token: &str) -> Option<Outcome> {
        use chacha20poly1305::aead::{Aead, KeyInit};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        match self {
            Shared::Rejected => Some(Outcome::Rejected),
            Shared::Unavailable => Some(Outcome::Unavailable),
            Shared::Refreshed(sealed) => {
                let bytes = crate::token::b64::decode(sealed.as_bytes())?;
                if bytes.len() < 24 {
                    return None;
                }
                let (nonce, ciphertext) = bytes.split_at(24);
                let cipher = XChaCha20Poly1305::new((&seal_key(refresh_token)).into());
                let plain = cipher.decrypt(XNonce::from_slice(nonce), ciphertext).ok()?;
                Tokens::decode(&plain).map(Outcome::Refreshed)
            }
        }
    }
}

/// A worker-shared slot for one refresh token (proxy-wasm shared data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// A worker is refreshing until `until_ms`.
    /// `by`: the claiming worker, which may claim again a claim whose
    /// callout it knows is gone.
    Claimed {
        token: TokenHash,
        until_ms: u64,
        /// 0 when absent.
        by: u32,
    },
    /// The answer, reusable until `until_ms` (the grace window).
    Done { token: TokenHash, outcome: Shared, until_ms: u64 },
}

/// What a worker does, given the slot it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotDecision {
    /// Write this claim (with the CAS read) and make the callout.
    Claim(Slot),
    /// Another worker is on it: wait for its answer.
    Wait,
    /// The answer is already there.
    Use(Outcome),
}

impl Slot {
    /// `{"Claimed":{"token":…,"until_ms":…,"by":…}}` or
    /// `{"Done":{"token":…,"outcome":…,"until_ms":…}}`, the outcome being
    /// `"Rejected"`, `"Unavailable"` or `{"Refreshed":"<sealed>"}`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        let mut outer = ObjectWriter::new(&mut out);
        match self {
            Slot::Claimed { token, until_ms, by } => {
                let mut o = ObjectWriter::new(outer.member("Claimed"));
                o.str("token", token).u64("until_ms", *until_ms).u64("by", u64::from(*by));
                o.end();
            }
            Slot::Done { token, outcome, until_ms } => {
                let mut o = ObjectWriter::new(outer.member("Done"));
                o.str("token", token);
                let v = o.member("outcome");
                match outcome {
                    Shared::Refreshed(sealed) => {
                        let mut r = ObjectWriter::new(v);
                        r.str("Refreshed", sealed);
                        r.end();
                    }
                    Shared::Rejected => json::write_str(v, "Rejected"),
                    Shared::Unavailable => json::write_str(v, "Unavailable"),
                }
                o.u64("until_ms", *until_ms);
                o.end();
            }
        }
        outer.end();
        out.into_bytes()
    }

    /// Reads what [`Slot::encode`] wrote; anything else is `None` (a
    /// repeated member too; unknown members are ignored).
    pub fn decode(bytes: &[u8]) -> Option<Slot> {
        let doc = json::parse(bytes).ok()?;
        let [(variant, body)] = Members::of(&doc)?.0 else { return None };
        let m = Members::of(body)?;
        let token = m.string("token")?;
        let until_ms = m.u64("until_ms")?;
        match variant.as_str() {
            "Claimed" => {
                let by = match m.get("by") {
                    None => 0,
                    Some(v) => u32::try_from(v.as_u64()?).ok()?,
                };
                Some(Slot::Claimed { token, until_ms, by })
            }
            "Done" => {
                let outcome = match m.get("outcome")? {
                    Value::Str(s) if s == "Rejected" => Shared::Rejected,
                    Value::Str(s) if s == "Unavailable" => Shared::Unavailable,
                    v => {
                        let [(name, Value::Str(sealed))] = Members::of(v)?.0 else { return None };
                        (name == "Refreshed").then(|| Shared::Refreshed(sealed.clone()))?
                    }
                };
                Some(Slot::Done { token, outcome, until_ms })
            }
            _ => None,
        }
    }

    /// Decides from the current slot content (absent, expired or someone
    /// else's token count as free: slots are reused, never leaked).
    /// `refresh_token` opens a sealed answer.
    pub fn decide(current: Option<&Slot>, refresh_token: &str, now_ms: u64, claim_ms: u64, me: u32) -> SlotDecision {
        let token = &hash(refresh_token);
        match current {
            // A shared failure answers the requests already waiting on it
            // (see `outcome_for`), never a new one: that one tries itself,
            // so the edge recovers as soon as the authority does.
            Some(Slot::Done { token: t, outcome, until_ms })
                if t == token && now_ms < *until_ms && *outcome != Shared::Unavailable =>
            {
                match outcome.open(refresh_token) {
                    Some(outcome) => SlotDecision::Use(outcome),
                    // Tampered: refresh ourselves.
                    None => SlotDecision::Claim(Slot::Claimed { token: token.clone(), until_ms: now_ms + claim_ms, by: me }),
                }
            }
            Some(Slot::Claimed { token: t, until_ms, by }) if t == token && now_ms < *until_ms && *by != me => SlotDecision::Wait,
            _ => SlotDecision::Claim(Slot::Claimed { token: token.clone(), until_ms: now_ms + claim_ms, by: me }),
        }
    }

    fn token(&self) -> &TokenHash {
        match self {
            Slot::Claimed { token, .. } | Slot::Done { token, .. } => token,
        }
    }

    /// Still claimed or still answering at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        match self {
            Slot::Claimed { until_ms, .. } | Slot::Done { until_ms, .. } => now_ms < *until_ms,
        }
    }

    /// A live claim of `token` by another worker than `me`: its answer may come.
    pub fn claimed_by_other(&self, token: &TokenHash, now_ms: u64, me: u32) -> bool {
        matches!(self, Slot::Claimed { token: t, until_ms, by } if t == token && now_ms < *until_ms && *by != me)
    }

    /// A live claim of `token` by worker `me`.
    pub fn claimed_by(&self, token: &TokenHash, now_ms: u64, me: u32) -> bool {
        matches!(self, Slot::Claimed { token: t, until_ms, by } if t == token && now_ms < *until_ms && *by == me)
    }

    /// A live answer (a pair or a rejection, not a failure) for `token`.
    pub fn holds_answer(&self, token: &TokenHash, now_ms: u64) -> bool {
        matches!(self, Slot::Done { token: t, outcome, until_ms } if t == token && now_ms < *until_ms && *outcome != Shared::Unavailable)
    }

    /// Live, and for another refresh token: not ours to overwrite.
    pub fn is_live_for_other(&self, token: &TokenHash, now_ms: u64) -> bool {
        self.token() != token && self.is_live(now_ms)
    }

    /// The answer for `refresh_token` in this slot, if it holds one that opens.
    pub fn outcome_for(&self, refresh_token: &str, now_ms: u64) -> Option<Outcome> {
        match self {
            Slot::Done { token: t, outcome, until_ms } if *t == hash(refresh_token) && now_ms < *until_ms => {
                outcome.open(refresh_token)
            }
            _ => None,
        }
    }
}

/// The shared-data key of the slot for `token`: a fixed number of slots,
/// chosen by hash, so memory stays bounded whatever the traffic.
pub fn slot_key(token: &TokenHash, slots: u32) -> String {
    let n = u32::from_str_radix(&token[..8.min(token.len())], 16).unwrap_or(0) % slots.max(1);
    slot_key_of(n)
}

/// The shared-data key of slot `n`.
pub fn slot_key_of(n: u32) -> String {
    format!("tollgate.refresh.{n}")
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn tokens() -> Tokens {
        Tokens { access_token: "a2".into(), refresh_token: "r2".into(), expires_in: 900 }
    }

    #[test]
    fn one_leader_per_token_per_worker() {
        let mut c = Coordinator::new();
        let (a, b) = (hash("r1"), hash("r9"));
        assert_eq!(c.join(&a, 1, 0, 100), Join::Lead);
        assert_eq!(c.join(&a, 2, 1, 100), Join::Follow);
        assert_eq!(c.join(&a, 3, 2, 100), Join::Follow);
        assert_eq!(c.join(&b, 4, 2, 100), Join::Lead);
        assert_eq!(c.finish(&a), vec![1, 2, 3]);
        assert_eq!(c.finish(&a), Vec::<u32>::new(), "finished once");
        assert_eq!(c.join(&a, 5, 3, 100), Join::Lead, "a later request starts anew");
    }

    #[test]
    fn a_vanished_leader_strands_no_one() {
        let mut c = Coordinator::new();
        let t = hash("r1");
        c.join(&t, 1, 0, 100);
        c.join(&t, 2, 0, 100);
        c.leave(1);
        assert_eq!(c.overdue(1), vec![(t.clone(), vec![2])], "due at once, not at 100");
        assert!(c.is_empty());
        // A group whose every request left disappears at once.
        c.join(&t, 3, 0, 100);
        c.leave(3);
        assert!(c.is_empty());
    }

    #[test]
    fn waiting_on_another_worker() {
        let mut c = Coordinator::new();
        let t = hash("r1");
        c.wait_elsewhere(&t, 7, 0, 50);
        c.wait_elsewhere(&t, 8, 0, 50);
        assert_eq!(c.waiting_elsewhere(), vec![(t.clone(), 7)]);
        assert_eq!(c.join(&t, 9, 0, 50), Join::Follow, "a group exists: follow it");
        assert_eq!(c.finish(&t), vec![7, 8, 9]);
    }

    #[test]
    fn slot_decisions() {
        let t = hash("r1");
        let other = hash("r2");
        let claimed = Slot::Claimed { token: t.clone(), until_ms: 100, by: 2 };
        let done = Slot::Done { token: t.clone(), outcome: Shared::seal(&Outcome::Refreshed(tokens()), "r1"), until_ms: 200 };
        let others = Slot::Done { token: other.clone(), outcome: Shared::Rejected, until_ms: 200 };
        let failed = Slot::Done { token: t.clone(), outcome: Shared::Unavailable, until_ms: 200 };
        // A sealed answer whose ciphertext was altered by another plugin.
        let Slot::Done { outcome: Shared::Refreshed(sealed), .. } = &done else { panic!("sealed") };
        let mut bytes = crate::token::b64::decode(sealed.as_bytes()).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        let tampered = Slot::Done { token: t.clone(), outcome: Shared::Refreshed(crate::token::b64::encode(&bytes)), until_ms: 200 };
        let claim_at = |now: u64| SlotDecision::Claim(Slot::Claimed { token: t.clone(), until_ms: now + 30, by: 1 });
        // (slot, now, decision)
        let cases = [
            (None, 0, claim_at(0)),
            (Some(&claimed), 50, SlotDecision::Wait),
            (Some(&claimed), 100, claim_at(100)),
            (Some(&done), 150, SlotDecision::Use(Outcome::Refreshed(tokens()))),
            (Some(&done), 200, claim_at(200)),
            (Some(&others), 10, claim_at(10)),
            (Some(&failed), 10, claim_at(10)),
            (Some(&tampered), 10, claim_at(10)),
        ];
        assert_eq!(failed.outcome_for("r1", 10), Some(Outcome::Unavailable), "waiters still learn of it");
        assert_eq!(done.outcome_for("r1", 10), Some(Outcome::Refreshed(tokens())));
        assert_eq!(done.outcome_for("r2", 10), None, "another refresh token opens nothing");
        assert_eq!(tampered.outcome_for("r1", 10), None);
        for (slot, now, want) in cases {
            assert_eq!(Slot::decide(slot, "r1", now, 30, 1), want, "{slot:?} at {now}");
        }
        // Its own claim, whose callout it knows is gone, a worker claims again.
        assert_eq!(Slot::decide(Some(&claimed), "r1", 50, 30, 2), SlotDecision::Claim(Slot::Claimed { token: t.clone(), until_ms: 80, by: 2 }));
    }

    #[test]
    fn shared_data_never_holds_a_token_in_clear() {
        let refresh_token = "rt-0123456789abcdef0123456789abcdef";
        let pair = Tokens { access_token: "eyJhbGciOi.access.sig".into(), refresh_token: "rt-successor-secret".into(), expires_in: 60 };
        let slot = Slot::Done { token: hash(refresh_token), outcome: Shared::seal(&Outcome::Refreshed(pair.clone()), refresh_token), until_ms: 9 };
        let bytes = slot.encode();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [refresh_token, "eyJhbGciOi", "rt-successor-secret", "access"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let back = Slot::decode(&bytes).expect("decodes");
        assert_eq!(back.outcome_for(refresh_token, 1), Some(Outcome::Refreshed(pair.clone())));
        // The seal is deterministic for one pair and key, different across keys.
        assert_eq!(Shared::seal(&Outcome::Refreshed(pair.clone()), refresh_token), Shared::seal(&Outcome::Refreshed(pair.clone()), refresh_token));
        assert_ne!(Shared::seal(&Outcome::Refreshed(pair.clone()), refresh_token), Shared::seal(&Outcome::Refreshed(pair), "rt-other"));
        // Garbage in a slot opens to nothing and panics nowhere.
        for junk in ["", "AAAA", "!!!", &"A".repeat(100)] {
            assert_eq!(Shared::Refreshed(junk.into()).open(refresh_token), None, "{junk}");
        }
    }

    #[test]
    fn token_endpoint_answers() {
        let ok = br#"{"access_token":"a2","refresh_token":"r2","expires_in":900,"token_type":"Bearer"}"#;
        // (status, body, outcome)
        let cases: Vec<(Option<u16>, &[u8], Outcome)> = vec![
            (Some(200), ok, Outcome::Refreshed(tokens())),
            (Some(400), br#"{"error":"invalid_grant"}"#, Outcome::Rejected),
            (Some(401), br#"{"error":"invalid_client"}"#, Outcome::Unavailable),
            (Some(400), b"not json", Outcome::Unavailable),
            (Some(200), b"{}", Outcome::Unavailable),
            (Some(200), br#"{"access_token":"","refresh_token":"r","expires_in":1}"#, Outcome::Unavailable),
            (Some(503), ok, Outcome::Unavailable),
            (None, b"", Outcome::Unavailable),
        ];
        for (status, body, want) in cases {
            assert_eq!(Outcome::from_response(status, body), want, "{status:?} {}", String::from_utf8_lossy(body));
        }
        let huge = vec![b' '; MAX_TOKEN_RESPONSE_BYTES + 1];
        assert_eq!(Outcome::from_response(Some(200), &huge), Outcome::Unavailable);
    }

    #[test]
    fn token_request_is_form_encoded() {
        assert_eq!(
            token_request_body("a+b/c=d&e", "tollgate-edge"),
            "grant_type=refresh_token&refresh_token=a%2Bb%2Fc%3Dd%26e&client_id=tollgate-edge"
        );
    }

    #[test]
    fn hashes_and_slots() {
        let h = hash("r1");
        assert_eq!(h.len(), 64);
        assert_ne!(h, hash("r2"));
        assert!(!h.contains("r1"));
        for t in ["a", "b", "c", "d"] {
            let k = slot_key(&hash(t), 64);
            let n: u32 = k.trim_start_matches("tollgate.refresh.").parse().unwrap();
            assert!(n < 64);
        }
        let s = Slot::Done { token: h.clone(), outcome: Shared::Rejected, until_ms: 5 };
        assert_eq!(Slot::decode(&s.encode()), Some(s.clone()));
        assert_eq!(Slot::decode(b""), None, "a cleared slot");
        // (now, live?, live for another token?)
        for (now, live, other) in [(4, true, true), (5, false, false)] {
            assert_eq!(s.is_live(now), live);
            assert_eq!(s.is_live_for_other(&hash("r2"), now), other);
            assert!(!s.is_live_for_other(&h, now), "never 'other' for its own token");
        }
    }

    /// The slot's shared-data encoding, pinned byte for byte (the layout
    /// serde's derive wrote, so workers of a module built before and after
    /// the change read each other's slots), and what decodes and what does not.
    #[test]
    fn slot_encoding_is_pinned() {
        let claimed = Slot::Claimed { token: "h".into(), until_ms: 7, by: 3 };
        let done = |outcome| Slot::Done { token: "h".into(), outcome, until_ms: 9 };
        let rows: Vec<(Slot, &str)> = vec![
            (claimed.clone(), r#"{"Claimed":{"token":"h","until_ms":7,"by":3}}"#),
            (done(Shared::Rejected), r#"{"Done":{"token":"h","outcome":"Rejected","until_ms":9}}"#),
            (done(Shared::Unavailable), r#"{"Done":{"token":"h","outcome":"Unavailable","until_ms":9}}"#),
            (done(Shared::Refreshed("s\"x".into())), r#"{"Done":{"token":"h","outcome":{"Refreshed":"s\"x"},"until_ms":9}}"#),
        ];
        for (slot, bytes) in rows {
            assert_eq!(String::from_utf8(slot.encode()).unwrap(), bytes);
            assert_eq!(Slot::decode(bytes.as_bytes()), Some(slot), "{bytes}");
        }
        let read: &[(&str, Option<Slot>)] = &[
            (r#"{"Claimed":{"token":"h","until_ms":7}}"#, Some(Slot::Claimed { token: "h".into(), until_ms: 7, by: 0 })),
            (r#"{"Claimed":{"token":"h","until_ms":7,"by":3,"x":1}}"#, Some(claimed.clone())),
            (r#"{"Claimed":{"token":"h","until_ms":7,"by":4294967296}}"#, None),
            (r#"{"Claimed":{"token":"h","until_ms":7,"by":3,"by":3}}"#, None),
            (r#"{"Claimed":{"token":"h","until_ms":7},"Done":{}}"#, None),
            (r#"{"Done":{"token":"h","outcome":"Refreshed","until_ms":9}}"#, None),
            (r#"{"Done":{"token":"h","outcome":{"Refreshed":1},"until_ms":9}}"#, None),
            (r#"{"Other":{"token":"h","until_ms":9}}"#, None),
            (r#"{"Claimed":{"token":"h","until_ms":-1}}"#, None),
        ];
        for (bytes, want) in read {
            assert_eq!(&Slot::decode(bytes.as_bytes()), want, "{bytes}");
        }
    }
}
