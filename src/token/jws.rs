//! JWS compact serialization with HMAC (RFC 7515, RFC 7518 §3.2).
//!
//! This layer knows signatures, keys and the JOSE header; it knows nothing of
//! claims. [`KeySet::verify`] returns the payload bytes only after the MAC
//! has been checked in constant time.

use super::json::{self, Field, Reader};
use super::{b64, Segment, TokenError};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
}

impl Algorithm {
    pub fn parse(name: &str) -> Option<Algorithm> {
        match name {
            "HS256" => Some(Algorithm::HS256),
            "HS384" => Some(Algorithm::HS384),
            "HS512" => Some(Algorithm::HS512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// The hash output size, which is also the minimum key size (RFC 7518 §3.2).
    pub fn output_len(self) -> usize {
        match self {
            Algorithm::HS256 => 32,
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// RFC 7518 §3.2: a key shorter than the hash output is refused.
    TooShort { alg: Algorithm, min: usize, got: usize },
    DuplicateKid(String),
    /// More than one key and one of them has no `kid`.
    MissingKid,
    Empty,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            KeyError::TooShort { alg, min, got } => {
                write!(f, "{alg} needs a secret of at least {min} bytes, got {got}")
            }
            KeyError::DuplicateKid(kid) => write!(f, "kid {kid:?} appears twice"),
            KeyError::MissingKid => f.write_str("every key needs a kid when there is more than one"),
            KeyError::Empty => f.write_str("at least one key is required"),
        }
    }
}

/// An HMAC state already keyed: cloning it per token skips re-hashing the
/// key pads on every request.
#[derive(Clone)]
enum Keyed {
    HS256(Hmac<Sha256>),
    HS384(Hmac<Sha384>),
    HS512(Hmac<Sha512>),
}

/// One signing/verification key. Its secret is never printed.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    alg: Algorithm,
    mac: Keyed,
    /// The base64url header this key writes on access tokens: a token whose
    /// header segment is these very bytes needs no decoding or parsing.
    access_header: String,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Key {
    pub fn new(kid: Option<String>, alg: Algorithm, secret: &[u8]) -> Result<Key, KeyError> {
        if secret.len() < alg.output_len() {
            return Err(KeyError::TooShort { alg, min: alg.output_len(), got: secret.len() });
        }
        // `new_from_slice` accepts any length for HMAC; it cannot fail here.
        let mac = match alg {
            Algorithm::HS256 => Hmac::<Sha256>::new_from_slice(secret).map(Keyed::HS256),
            Algorithm::HS384 => Hmac::<Sha384>::new_from_slice(secret).map(Keyed::HS384),
            Algorithm::HS512 => Hmac::<Sha512>::new_from_slice(secret).map(Keyed::HS512),
        }
        .map_err(|_| KeyError::TooShort { alg, min: alg.output_len(), got: secret.len() })?;
        let access_header = b64::encode(header_json(alg, Some(super::ACCESS_TOKEN_TYP), kid.as_deref()).as_bytes());
        Ok(Key { kid, alg, mac, access_header })
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    fn tag(&self, signing_input: &[u8]) -> Vec<u8> {
        match self.mac.clone() {
            Keyed::HS256(mut m) => {
                m.update(signing_input);
                m.finalize().into_bytes().to_vec()
            }
            Keyed::HS384(mut m) => {
                m.update(signing_input);
                m.finalize().into_bytes().to_vec()
            }
            Keyed::HS512(mut m) => {
                m.update(signing_input);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Constant-time check; a tag of the wrong length fails.
    fn check(&self, signing_input: &[u8], tag: &[u8]) -> bool {
        match self.mac.clone() {
            Keyed::HS256(mut m) => {
                m.update(signing_input);
                m.verify_slice(tag).is_ok()
            }
            Keyed::HS384(mut m) => {
                m.update(signing_input);
                m.verify_slice(tag).is_ok()
            }
            Keyed::HS512(mut m) => {
                m.update(signing_input);
                m.verify_slice(tag).is_ok()
            }
        }
    }

    /// Signs `payload` (already serialized JSON) as a compact JWS whose header
    /// carries `alg`, `typ` when given, and this key's `kid`.
    pub fn sign(&self, typ: Option<&str>, payload: &[u8]) -> String {
        let header = header_json(self.alg, typ, self.kid.as_deref());
        let mut out = b64::encode(header.as_bytes());
        out.push('.');
        out.push_str(&b64::encode(payload));
        let tag = self.tag(out.as_bytes());
        out.push('.');
        out.push_str(&b64::encode(&tag));
        out
    }
}

/// The JOSE header Tollgate writes: `alg`, then `kid` and `typ` when given,
/// in that (sorted) order, so the bytes are stable.
fn header_json(alg: Algorithm, typ: Option<&str>, kid: Option<&str>) -> String {
    let mut out = String::new();
    let mut header = json::ObjectWriter::new(&mut out);
    header.str("alg", alg.name());
    if let Some(kid) = kid {
        header.str("kid", kid);
    }
    if let Some(typ) = typ {
        header.str("typ", typ);
    }
    header.end();
    out
}

/// The keys a verifier accepts: usually one, two during a rotation.
#[derive(Clone, Debug)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    pub fn new(keys: Vec<Key>) -> Result<KeySet, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        if keys.len() > 1 {
            for (i, k) in keys.iter().enumerate() {
                let kid = k.kid.as_deref().ok_or(KeyError::MissingKid)?;
                if keys[..i].iter().any(|o| o.kid.as_deref() == Some(kid)) {
                    return Err(KeyError::DuplicateKid(kid.to_owned()));
                }
            }
        }
        Ok(KeySet { keys })
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// Checks the compact JWS `token` and returns its header and decoded
    /// payload. The checks run in this order, cheapest and most decisive
    /// first: size, shape, header, `alg` (`none` before any MAC work), key
    /// selection, `alg` against the key, MAC, payload encoding.
    pub fn verify(&self, token: &[u8], max_len: usize) -> Result<Verified, TokenError> {
        if token.len() > max_len {
            return Err(TokenError::TooLarge);
        }
        let (header_b64, payload_b64, sig_b64) = split(token)?;
        // The common case: a header byte-identical to one a configured key
        // writes. Same bytes, same parse: skip decoding and parsing it.
        if let Some(key) = self.keys.iter().find(|k| k.access_header.as_bytes() == header_b64) {
            let header = Header {
                alg: Some(Field::Valid(key.alg.name().to_owned())),
                kid: key.kid.clone().map(Field::Valid),
                typ: Some(Field::Valid(super::ACCESS_TOKEN_TYP.to_owned())),
                crit: false,
            };
            return finish(key, header, token, header_b64, payload_b64, sig_b64);
        }
        let header_bytes = b64::decode(header_b64).ok_or(TokenError::BadEncoding(Segment::Header))?;
        let header = Header::parse(&header_bytes)?;
        let alg_name = match &header.alg {
            Some(Field::Valid(a)) => a,
            Some(Field::Invalid) => return Err(TokenError::AlgorithmNotAllowed),
            None => return Err(TokenError::AlgorithmMissing),
        };
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgorithmNone);
        }
        let alg = Algorithm::parse(alg_name).ok_or(TokenError::AlgorithmNotAllowed)?;
        if header.crit {
            return Err(TokenError::UnsupportedCritical);
        }
        let key = match (&self.keys[..], &header.kid) {
            // One key configured without a kid: it is the only candidate,
            // whatever kid the token names.
            ([only], _) if only.kid.is_none() => only,
            (_, Some(Field::Valid(kid))) => self.get(kid).ok_or(TokenError::UnknownKeyId)?,
            (_, Some(Field::Invalid)) => return Err(TokenError::UnknownKeyId),
            ([only], None) => only,
            (_, None) => return Err(TokenError::KeyIdMissing),
        };
        if key.alg != alg {
            return Err(TokenError::AlgorithmMismatch);
        }
        finish(key, header, token, header_b64, payload_b64, sig_b64)
    }
}

/// MAC (constant time), then the payload's encoding.
fn finish(key: &Key, header: Header, token: &[u8], header_b64: &[u8], payload_b64: &[u8], sig_b64: &[u8]) -> Result<Verified, TokenError> {
    let tag = b64::decode(sig_b64).ok_or(TokenError::BadEncoding(Segment::Signature))?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    if !key.check(signing_input, &tag) {
        return Err(TokenError::SignatureInvalid);
    }
    let payload = b64::decode(payload_b64).ok_or(TokenError::BadEncoding(Segment::Payload))?;
    Ok(Verified { header, payload })
}

/// A JWS whose MAC checked out.
#[derive(Debug)]
pub struct Verified {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// The three segments of a compact JWS: header, payload, signature.
type Segments<'t> = (&'t [u8], &'t [u8], &'t [u8]);

fn split(token: &[u8]) -> Result<Segments<'_>, TokenError> {
    let mut parts = token.splitn(4, |&b| b == b'.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(TokenError::Malformed),
    }
}

/// The JOSE header members Tollgate reads. Others are ignored (never used to
/// find a key: no `jwk`, `jku`, `x5u`).
#[derive(Debug, Default)]
pub struct Header {
    pub alg: Option<Field<String>>,
    pub kid: Option<Field<String>>,
    pub typ: Option<Field<String>>,
    /// `crit` was present. Tollgate implements no extension, so any is refused.
    pub crit: bool,
}

impl Header {
    pub fn parse(bytes: &[u8]) -> Result<Header, TokenError> {
        let mut h = Header::default();
        parse_object(bytes, |r, name| {
            match name {
                "alg" => h.alg = Some(r.str_field()?),
                "kid" => h.kid = Some(r.str_field()?),
                "typ" => h.typ = Some(r.str_field()?),
                "crit" => {
                    h.crit = true;
                    r.skip()?;
                }
                _ => r.skip()?,
            }
            Ok(())
        })
        .map_err(|e| match e {
            json::Error::Duplicate => TokenError::DuplicateMember(Segment::Header),
            json::Error::Syntax(_) => TokenError::NotJsonObject(Segment::Header),
        })?;
        Ok(h)
    }
}

/// Reads `bytes` as exactly one JSON object, member by member, refusing a
/// repeated name at any depth.
pub(crate) fn parse_object(bytes: &[u8], member: impl FnMut(&mut Reader<'_>, &str) -> Result<(), json::Error>) -> Result<(), json::Error> {
    let mut r = Reader::refusing_duplicates(bytes);
    r.object(member)?;
    r.end()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// The fast path and the full parse must agree on every header a key
    /// writes, and the fast path must never apply to any other header.
    #[test]
    fn header_fast_path_agrees_with_the_full_parse() {
        let secret = [7u8; 64];
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            for kid in [None, Some("k1".to_string()), Some("k\"2\u{e9}".to_string())] {
                let key = Key::new(kid.clone(), alg, &secret).unwrap();
                let parsed = Header::parse(&b64::decode(key.access_header.as_bytes()).unwrap()).unwrap();
                assert_eq!(parsed.alg, Some(Field::Valid(alg.name().to_owned())));
                assert_eq!(parsed.kid, kid.clone().map(Field::Valid));
                assert_eq!(parsed.typ, Some(Field::Valid("at+jwt".to_owned())));
                assert!(!parsed.crit);
                // A token signed by the key takes the fast path and verifies.
                let token = key.sign(Some("at+jwt"), b"{}");
                let set = KeySet::new(vec![key.clone()]).unwrap();
                let v = set.verify(token.as_bytes(), 8192).unwrap();
                assert_eq!(v.header.alg, parsed.alg);
                // Another typ spelling is a different header: the full path.
                let other = key.sign(Some("AT+JWT"), b"{}");
                assert!(!other.starts_with(&key.access_header));
                assert!(set.verify(other.as_bytes(), 8192).is_ok());
            }
        }
    }

    #[test]
    fn the_fast_path_still_checks_the_mac() {
        let key = Key::new(Some("k1".into()), Algorithm::HS256, &[1u8; 32]).unwrap();
        let forger = Key::new(Some("k1".into()), Algorithm::HS256, &[2u8; 32]).unwrap();
        let set = KeySet::new(vec![key]).unwrap();
        let forged = forger.sign(Some("at+jwt"), b"{}");
        assert_eq!(set.verify(forged.as_bytes(), 8192).err(), Some(TokenError::SignatureInvalid));
    }
}
