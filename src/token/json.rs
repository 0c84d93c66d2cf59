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
