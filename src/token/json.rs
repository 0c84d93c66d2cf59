//! JSON object readers for JOSE headers and JWT claims.
//!
//! Two rules serde's derive does not give us:
//! - a member name that appears twice (at any depth) rejects the whole
//!   document (RFC 7515 §5.2 step 4; no "last one wins");
//! - a claim of the wrong JSON type never fails silently and never skips its
//!   check: it is recorded as [`Field::Invalid`] and the validator turns it into
//!   a precise error (the class of CVE-2026-25537).

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Marker in the error text of a duplicate member; see [`is_duplicate_error`].
const DUPLICATE: &str = "tollgate: duplicate member";

pub fn is_duplicate_error(e: &serde_json::Error) -> bool {
    e.to_string().starts_with(DUPLICATE)
}

/// A member name, borrowed from the input when it has no escapes.
pub struct Name<'de>(pub Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Tracks member names of one object and fails on the second occurrence.
#[derive(Default)]
pub struct Seen<'de>(Vec<Cow<'de, str>>);

impl<'de> Seen<'de> {
    pub fn insert<E: de::Error>(&mut self, name: Cow<'de, str>) -> Result<(), E> {
        if self.0.contains(&name) {
            return Err(E::custom(DUPLICATE));
        }
        self.0.push(name);
        Ok(())
    }
}

/// Skips any JSON value while still rejecting duplicate names inside it.
pub struct Skip;

impl<'de> de::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        let mut seen = Seen::default();
        while let Some(Name(name)) = map.next_key()? {
            seen.insert(name)?;
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

/// A member value read leniently: the right type, or a note that it was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<T> {
    Valid(T),
    Invalid,
}

macro_rules! skip_as_invalid {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Field::Invalid)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Field::Invalid)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Field::Invalid)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Field::Invalid)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            SkipVisitor.visit_map(map).map(|_| Field::Invalid)
        }
    };
}

/// A JSON integer ≥ 0 that fits `u64`. Strings, floats (`1.0`, `1e3`),
/// negatives, booleans, `null`, arrays and objects are `Invalid`.
pub struct UInt;

impl<'de> DeserializeSeed<'de> for UInt {
    type Value = Field<u64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UInt {
    type Value = Field<u64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::Valid(v))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Field::Invalid)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_seq(seq).map(|_| Field::Invalid)
    }
    skip_as_invalid!();
}

/// A JSON string.
pub struct Str;

impl<'de> DeserializeSeed<'de> for Str {
    type Value = Field<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Str {
    type Value = Field<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Valid(v.to_owned()))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Field::Invalid)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_seq(seq).map(|_| Field::Invalid)
    }
    skip_as_invalid!();
}

/// A JSON array of strings; with `one_allowed`, a lone string too
/// (`aud` may be either, RFC 7519 §4.1.3).
pub struct Strings {
    pub one_allowed: bool,
}

impl<'de> DeserializeSeed<'de> for Strings {
    type Value = Field<Vec<String>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strings {
    type Value = Field<Vec<String>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(if self.one_allowed { Field::Valid(vec![v.to_owned()]) } else { Field::Invalid })
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Field::Invalid)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut all_strings = true;
        while let Some(item) = seq.next_element_seed(Str)? {
            match item {
                Field::Valid(s) => out.push(s),
                Field::Invalid => all_strings = false,
            }
        }
        Ok(if all_strings { Field::Valid(out) } else { Field::Invalid })
    }
    skip_as_invalid!();
}

/// Reads the value of the current member with `seed`.
pub fn value<'de, A: MapAccess<'de>, S: DeserializeSeed<'de>>(
    map: &mut A,
    seed: S,
) -> Result<S::Value, A::Error> {
    map.next_value_seed(seed)
}

/// Skips the value of the current member (still checking for duplicates).
pub fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<Skip>().map(|_| ())
}

// ---- a document as a tree -----------------------------------------------------
//
// The configuration and the authority's answers are read by walking a tree
// that serde_json's tokenizer builds through one visitor: no derive
// machinery per type, and a reader that knows where it is can name the
// field of a refusal by its full path. Members keep their order and their
// repetitions; readers refuse a name that appears twice.

/// A JSON value. Numbers that are not integers ≥ 0 fitting `u64` keep their
/// kind only: no reader accepts them, and an error names the kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A fraction, an exponent, or an integer beyond `u64`.
    Float,
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The kind, as an error message says it (`invalid type: a string, expected ...`).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::UInt(_) | Value::Int(_) => "an integer",
            Value::Float => "a floating point number",
            Value::Str(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::UInt(n) => Some(*n),
            _ => None,
        }
    }
}

/// Parses one JSON document (nothing but white space after it). The error
/// is serde_json's, without its position.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = de::Deserialize::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    v.map_err(|e| {
        let msg = e.to_string();
        match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_owned(),
            None => msg,
        }
    })
}

impl<'de> de::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(if v >= 0 { Value::UInt(v as u64) } else { Value::Int(v) })
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::UInt(v))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Float)
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Name(name)) = map.next_key()? {
            out.push((name.into_owned(), map.next_value()?));
        }
        Ok(Value::Object(out))
    }
}

/// The members of a JSON object whose names are distinct: what the wire
/// readers walk. Each accessor answers `None` for a wrong type; the
/// `opt_` ones answer `Some(None)` for an absent or null member.
pub struct Members<'a>(pub &'a [(String, Value)]);

/// The most members a wire object may have (none defines more than 7).
pub const MAX_MEMBERS: usize = 64;

impl<'a> Members<'a> {
    pub fn of(v: &'a Value) -> Option<Members<'a>> {
        let Value::Object(m) = v else { return None };
        // Pairwise: no sort instantiated for it; bounded, so quadratic stays small.
        if m.len() > MAX_MEMBERS || m.iter().enumerate().any(|(i, (n, _))| m[..i].iter().any(|(o, _)| o == n)) {
            return None;
        }
        Some(Members(m))
    }

    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// `Some(())` when no other member is there.
    pub fn only(&self, names: &[&str]) -> Option<()> {
        self.0.iter().all(|(n, _)| names.contains(&n.as_str())).then_some(())
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn u64(&self, name: &str) -> Option<u64> {
        self.get(name)?.as_u64()
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name)?.as_str().map(str::to_owned)
    }

    pub fn opt_u64(&self, name: &str) -> Option<Option<u64>> {
        match self.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(v) => v.as_u64().map(Some),
        }
    }

    pub fn opt_string(&self, name: &str) -> Option<Option<String>> {
        match self.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(v) => v.as_str().map(|s| Some(s.to_owned())),
        }
    }
}
