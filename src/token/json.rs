//! A strict JSON reader and a small writer, the only JSON code in the filter.
//!
//! Reading follows RFC 8259 strictly, the way serde_json (the authority's
//! parser, and the fuzz targets' reference) reads: no comments, no trailing
//! commas, no BOM, UTF-8 only, no lone surrogate escapes, numbers that
//! overflow `f64` refused, nesting below 128 levels. Errors carry
//! serde_json's wording, without a position.
//!
//! Two rules for JOSE headers and JWT claims that a generic reader does not give:
//! - a member name that appears twice (at any depth) rejects the whole
//!   document (RFC 7515 §5.2 step 4; no "last one wins");
//! - a claim of the wrong JSON type never fails silently and never skips its
//!   check: it is recorded as [`Field::Invalid`] and the validator turns it into
//!   a precise error (the class of CVE-2026-25537).
//!
//! The token codec reads members as they stream past ([`Reader::object`],
//! names borrowed from the input when they have no escapes); the
//! configuration and the authority's answers are read as a tree ([`parse`],
//! [`Value`], [`Members`]).

use std::borrow::Cow;

/// Why a document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not JSON (serde_json's wording).
    Syntax(&'static str),
    /// A member name appeared twice in one object (only when the reader
    /// was made with [`Reader::refusing_duplicates`]).
    Duplicate,
}

impl Error {
    pub fn message(self) -> &'static str {
        match self {
            Error::Syntax(m) => m,
            Error::Duplicate => "duplicate member",
        }
    }
}

/// Nesting of arrays and objects at which a document is refused (serde_json's limit).
const MAX_DEPTH: usize = 128;

/// A member value read leniently: the right type, or a note that it was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<T> {
    Valid(T),
    Invalid,
}

/// The kind of number a JSON number literal is.
enum Number {
    UInt(u64),
    Int(i64),
    Float,
}

/// A pull reader over one JSON document.
pub struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
    refuse_duplicates: bool,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { b: bytes, i: 0, depth: 0, refuse_duplicates: false }
    }

    /// A reader that refuses a repeated member name in any object, nested
    /// or not, skipped or not.
    pub fn refusing_duplicates(bytes: &'a [u8]) -> Reader<'a> {
        Reader { refuse_duplicates: true, ..Reader::new(bytes) }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    /// Nothing but white space is left.
    pub fn end(&mut self) -> Result<(), Error> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Error::Syntax("trailing characters")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Error> {
        for &w in word {
            match self.b.get(self.i) {
                Some(&c) if c == w => self.i += 1,
                Some(_) => return Err(Error::Syntax("expected ident")),
                None => return Err(Error::Syntax("EOF while parsing a value")),
            }
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err(Error::Syntax("recursion limit exceeded"));
        }
        self.i += 1;
        Ok(())
    }

    /// Reads an object, calling `member` with each name; `member` must read
    /// the value. Names are checked for repetition after their value, as
    /// the members arrive.
    pub fn object(&mut self, mut member: impl FnMut(&mut Self, &str) -> Result<(), Error>) -> Result<(), Error> {
        match self.peek() {
            Some(b'{') => self.enter()?,
            Some(_) => return Err(Error::Syntax("invalid type: expected an object")),
            None => return Err(Error::Syntax("EOF while parsing a value")),
        }
        let mut seen: Vec<Cow<'a, str>> = Vec::new();
        let mut first = true;
        loop {
            match self.peek() {
                Some(b'}') if first => break,
                Some(b'}') => return Err(Error::Syntax("trailing comma")),
                Some(b'"') => {}
                Some(_) => return Err(Error::Syntax("key must be a string")),
                None => return Err(Error::Syntax("EOF while parsing an object")),
            }
            let name = self.string()?;
            match self.peek() {
                Some(b':') => self.i += 1,
                Some(_) => return Err(Error::Syntax("expected `:`")),
                None => return Err(Error::Syntax("EOF while parsing an object")),
            }
            member(self, &name)?;
            if self.refuse_duplicates {
                if seen.contains(&name) {
                    return Err(Error::Duplicate);
                }
                seen.push(name);
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => break,
                Some(_) => return Err(Error::Syntax("expected `,` or `}`")),
                None => return Err(Error::Syntax("EOF while parsing an object")),
            }
            first = false;
        }
        self.i += 1;
        self.depth -= 1;
        Ok(())
    }

    /// Reads an array, calling `item` for each element; `item` must read it.
    pub fn array(&mut self, mut item: impl FnMut(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        match self.peek() {
            Some(b'[') => self.enter()?,
            Some(_) => return Err(Error::Syntax("invalid type: expected an array")),
            None => return Err(Error::Syntax("EOF while parsing a value")),
        }
        let mut first = true;
        loop {
            match self.peek() {
                Some(b']') if first => break,
                Some(b']') => return Err(Error::Syntax("trailing comma")),
                None => return Err(Error::Syntax("EOF while parsing a list")),
                Some(_) => {}
            }
            item(self)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => break,
                Some(_) => return Err(Error::Syntax("expected `,` or `]`")),
                None => return Err(Error::Syntax("EOF while parsing a list")),
            }
            first = false;
        }
        self.i += 1;
        self.depth -= 1;
        Ok(())
    }

    /// Reads a string literal (the reader is at its opening quote).
    fn string(&mut self) -> Result<Cow<'a, str>, Error> {
        self.i += 1;
        let mut owned: Option<String> = None;
        let mut start = self.i;
        loop {
            let Some(&c) = self.b.get(self.i) else { return Err(Error::Syntax("EOF while parsing a string")) };
            match c {
                b'"' | b'\\' => {
                    let run = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| Error::Syntax("invalid unicode code point"))?;
                    self.i += 1;
                    if c == b'"' {
                        return Ok(match owned {
                            None => Cow::Borrowed(run),
                            Some(mut s) => {
                                s.push_str(run);
                                Cow::Owned(s)
                            }
                        });
                    }
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(run);
                    self.escape(s)?;
                    start = self.i;
                }
                0..=0x1f => return Err(Error::Syntax("control character (\\u0000-\\u001F) found while parsing a string")),
                _ => self.i += 1,
            }
        }
    }

    /// One escape, after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), Error> {
        let Some(&c) = self.b.get(self.i) else { return Err(Error::Syntax("EOF while parsing a string")) };
        self.i += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let code = match hi {
                    0xD800..=0xDBFF => {
                        for want in [b'\\', b'u'] {
                            match self.b.get(self.i) {
                                Some(&c) if c == want => self.i += 1,
                                Some(_) => return Err(Error::Syntax("unexpected end of hex escape")),
                                None => return Err(Error::Syntax("EOF while parsing a string")),
                            }
                        }
                        let lo = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return Err(Error::Syntax("lone leading surrogate in hex escape"));
                        }
                        0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(Error::Syntax("lone leading surrogate in hex escape")),
                    n => u32::from(n),
                };
                char::from_u32(code).ok_or(Error::Syntax("invalid unicode code point"))?
            }
            _ => return Err(Error::Syntax("invalid escape")),
        };
        out.push(ch);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16, Error> {
        if self.b.len() - self.i < 4 {
            return Err(Error::Syntax("EOF while parsing a string"));
        }
        let mut n: u16 = 0;
        for _ in 0..4 {
            let c = self.b[self.i];
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(Error::Syntax("invalid escape")),
            };
            n = n << 4 | u16::from(d);
            self.i += 1;
        }
        Ok(n)
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
        self.i - from
    }

    /// Reads a number literal (the reader is at `-` or a digit).
    fn number(&mut self) -> Result<Number, Error> {
        let negative = self.b.get(self.i) == Some(&b'-');
        if negative {
            self.i += 1;
        }
        let int_start = self.i;
        match self.b.get(self.i) {
            Some(b'0') => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.b.get(self.i) {
                    return Err(Error::Syntax("invalid number"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            Some(_) => return Err(Error::Syntax("invalid number")),
            None => return Err(Error::Syntax("EOF while parsing a value")),
        }
        let int = &self.b[int_start..self.i];
        let mut frac: &[u8] = &[];
        let mut exp: i64 = 0;
        let mut float = false;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let from = self.i;
            if self.digits() == 0 {
                return Err(Error::Syntax(if self.i == self.b.len() { "EOF while parsing a value" } else { "invalid number" }));
            }
            frac = &self.b[from..self.i];
            float = true;
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            let minus = match self.b.get(self.i) {
                Some(b'-') => {
                    self.i += 1;
                    true
                }
                Some(b'+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let from = self.i;
            if self.digits() == 0 {
                return Err(Error::Syntax(if self.i == self.b.len() { "EOF while parsing a value" } else { "invalid number" }));
            }
            for &d in &self.b[from..self.i] {
                exp = exp.saturating_mul(10).saturating_add(i64::from(d - b'0'));
            }
            if minus {
                exp = -exp;
            }
            float = true;
        }
        if !float {
            let fits = int.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')));
            match (negative, fits) {
                (false, Some(n)) => return Ok(Number::UInt(n)),
                // `-0` is a float to serde_json, as is anything below i64::MIN.
                (true, Some(n)) if n != 0 && n <= 1 << 63 => return Ok(Number::Int((n as i64).wrapping_neg())),
                _ => {}
            }
        }
        if overflows_f64(int, frac, exp) {
            return Err(Error::Syntax("number out of range"));
        }
        Ok(Number::Float)
    }

    /// Reads any value into a tree.
    pub fn value(&mut self) -> Result<Value, Error> {
        match self.peek() {
            Some(b'{') => {
                let mut out = Vec::new();
                self.object(|r, name| {
                    let v = r.value()?;
                    out.push((name.to_owned(), v));
                    Ok(())
                })?;
                Ok(Value::Object(out))
            }
            Some(b'[') => {
                let mut out = Vec::new();
                self.array(|r| {
                    out.push(r.value()?);
                    Ok(())
                })?;
                Ok(Value::Array(out))
            }
            Some(b'"') => Ok(Value::Str(self.string()?.into_owned())),
            Some(b't') => self.literal(b"true").map(|()| Value::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Value::Bool(false)),
            Some(b'n') => self.literal(b"null").map(|()| Value::Null),
            Some(b'-' | b'0'..=b'9') => Ok(match self.number()? {
                Number::UInt(n) => Value::UInt(n),
                Number::Int(n) => Value::Int(n),
                Number::Float => Value::Float,
            }),
            Some(_) => Err(Error::Syntax("expected value")),
            None => Err(Error::Syntax("EOF while parsing a value")),
        }
    }

    /// Skips any value (still refusing duplicates inside it, when asked to).
    pub fn skip(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'{') => self.object(|r, _| r.skip()),
            Some(b'[') => self.array(Reader::skip),
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            _ => self.value().map(drop),
        }
    }

    /// A JSON string; any other value is read, then `Invalid`.
    pub fn str_field(&mut self) -> Result<Field<String>, Error> {
        if self.peek() == Some(b'"') {
            return Ok(Field::Valid(self.string()?.into_owned()));
        }
        self.skip().map(|()| Field::Invalid)
    }

    /// A JSON integer ≥ 0 that fits `u64`. Strings, floats (`1.0`, `1e3`),
    /// negatives, booleans, `null`, arrays and objects are `Invalid`.
    pub fn uint_field(&mut self) -> Result<Field<u64>, Error> {
        if let Some(b'-' | b'0'..=b'9') = self.peek() {
            return Ok(match self.number()? {
                Number::UInt(n) => Field::Valid(n),
                _ => Field::Invalid,
            });
        }
        self.skip().map(|()| Field::Invalid)
    }

    /// A JSON array of strings; with `one_allowed`, a lone string too
    /// (`aud` may be either, RFC 7519 §4.1.3).
    pub fn strings_field(&mut self, one_allowed: bool) -> Result<Field<Vec<String>>, Error> {
        match self.peek() {
            Some(b'"') => {
                let s = self.string()?;
                Ok(if one_allowed { Field::Valid(vec![s.into_owned()]) } else { Field::Invalid })
            }
            Some(b'[') => {
                let mut out = Vec::new();
                let mut all_strings = true;
                self.array(|r| {
                    match r.str_field()? {
                        Field::Valid(s) => out.push(s),
                        Field::Invalid => all_strings = false,
                    }
                    Ok(())
                })?;
                Ok(if all_strings { Field::Valid(out) } else { Field::Invalid })
            }
            _ => self.skip().map(|()| Field::Invalid),
        }
    }
}

/// The decimal digits of the midpoint between `f64::MAX` and 2^1024: a
/// literal at or above it rounds to infinity, which serde_json refuses.
const F64_OVERFLOW: &[u8] = b"179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";

/// Whether `int.frac × 10^exp` is too large for an `f64`, by its digits
/// alone (no float parsing is linked for a value no reader accepts).
fn overflows_f64(int: &[u8], frac: &[u8], exp: i64) -> bool {
    let all = || int.iter().chain(frac).copied();
    let Some(lead) = all().position(|d| d != b'0') else { return false };
    // The decimal exponent of the first significant digit.
    let e10 = (int.len() as i64 - 1 - lead as i64).saturating_add(exp);
    match e10 {
        ..=307 => false,
        309.. => true,
        _ => {
            let mut sig = all().skip(lead);
            for &m in F64_OVERFLOW {
                match sig.next() {
                    Some(d) if d > m => return true,
                    Some(d) if d < m => return false,
                    Some(_) => {}
                    // Shorter and equal so far: below, unless only zeros of the midpoint remain.
                    None => return false,
                }
            }
            true
        }
    }
}

// ---- a document as a tree -----------------------------------------------------
//
// The configuration and the authority's answers are read by walking a tree:
// no derive machinery per type, and a reader that knows where it is can
// name the field of a refusal by its full path. Members keep their order
// and their repetitions; readers refuse a name that appears twice.

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


/// Parses one JSON document (nothing but white space after it).
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut r = Reader::new(bytes);
    let v = r.value().and_then(|v| r.end().map(|()| v));
    v.map_err(|e| e.message().to_owned())
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

// ---- writing -------------------------------------------------------------------
//
// What the filter writes: error bodies, the JOSE header and claims it signs
// (tests and the authority mint with the same code), the refresh slot and
// the revocation set it shares between workers. Compact, members in the
// order written, strings escaped the way serde_json escapes them.

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends an integer.
pub fn write_u64(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// Appends an array of strings.
pub fn write_strs(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, s);
    }
    out.push(']');
}

/// Writes one object, member by member; [`ObjectWriter::end`] closes it.
pub struct ObjectWriter<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    pub fn new(out: &'o mut String) -> ObjectWriter<'o> {
        out.push('{');
        ObjectWriter { out, first: true }
    }

    /// Writes the name; the caller writes the value into what it returns.
    pub fn member(&mut self, name: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_str(self.out, name);
        self.out.push(':');
        self.out
    }

    pub fn str(&mut self, name: &str, v: &str) -> &mut Self {
        write_str(self.member(name), v);
        self
    }

    pub fn u64(&mut self, name: &str, v: u64) -> &mut Self {
        write_u64(self.member(name), v);
        self
    }

    pub fn end(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// Documents at the edges of the grammar: the reader accepts exactly
    /// what serde_json (the authority's parser, the fuzz targets' oracle)
    /// accepts, and reads numbers into the same kinds.
    #[test]
    fn reader_accepts_what_serde_json_accepts() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let rows: Vec<Vec<u8>> = [
            "", " ", "{}", " {} ", "[]", "[1,]", "{\"a\":1,}", "[,1]", "{,}", "{\"a\" 1}", "{\"a\":}", "{1:2}", "{\"a\":1 \"b\":2}",
            "true", "tru", "truex", "nul", "null", "false", "True", "1", "-", "-0", "-0.0", "01", "-01", "1.", "1.e3", ".5",
            "1e", "1e+", "1e-3", "1E400", "0e99999999999999999999", "1e-99999999999", "1.7976931348623157e308",
            "1.7976931348623159e308", "1.8e308", "17976931348623157e292", "0.00000000000000000000000000001e330",
            "18446744073709551615", "18446744073709551616", "-9223372036854775808", "-9223372036854775809",
            "\"\"", "\"a", "\"\\\"", "\"\\u00e9\"", "\"\\ud83d\\ude00\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
            "\"\\ud800\\\\\"", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\/\"", "\"tab\there\"", "\"\u{7f}\"", "\"é\"",
            "[1] x", "[1] [2]", "{\"a\":1}{}", "\u{feff}{}", "\t\n\r {}\t\n\r", "\u{a0}{}", "[1 2]", "[\"a\":1]",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain([deep(127).into_bytes(), deep(128).into_bytes(), b"\"\xff\"".to_vec(), b"\"\xc3\"".to_vec(), b"[\"a\x01\"]".to_vec()])
        .collect();
        let mut wording = Vec::new();
        for doc in rows {
            let ours = parse(&doc);
            let theirs = serde_json::from_slice::<serde_json::Value>(&doc);
            let shown = String::from_utf8_lossy(&doc);
            assert_eq!(ours.is_ok(), theirs.is_ok(), "{shown:?}: ours {ours:?}, serde_json {theirs:?}");
            if let (Ok(v), Ok(t)) = (&ours, &theirs) {
                let kind = match t {
                    serde_json::Value::Number(n) if n.is_u64() => Value::UInt(n.as_u64().unwrap()),
                    serde_json::Value::Number(n) if n.is_i64() => Value::Int(n.as_i64().unwrap()),
                    serde_json::Value::Number(_) => Value::Float,
                    _ => v.clone(),
                };
                assert_eq!(v, &kind, "{shown:?}");
            }
            if let (Err(e), Err(t)) = (&ours, &theirs) {
                if !t.to_string().starts_with(e.as_str()) {
                    wording.push(format!("{shown:?}: ours {e:?}, serde_json {t}"));
                }
            }
        }
        assert!(wording.is_empty(), "errors worded otherwise:\n{}", wording.join("\n"));
    }

    /// Every string serde_json reads, ours reads to the same text.
    #[test]
    fn strings_read_as_serde_json_reads_them() {
        for s in [r#""plain""#, r#""a\"b\\c\/d\be\ff\ng\rh\ti""#, r#""\u0000\u001F\u00e9\u20AC""#, r#""\uD83D\uDE00 x""#, "\"é€😀\""] {
            let ours = parse(s.as_bytes()).unwrap();
            let theirs: String = serde_json::from_str(s).unwrap();
            assert_eq!(ours, Value::Str(theirs), "{s}");
        }
    }

    /// The writer escapes as serde_json does, so what the filter writes is
    /// byte for byte what the authority and older filters wrote.
    #[test]
    fn writer_matches_serde_json_bytes() {
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        for s in ["", "plain", "q\"b\\s/", "\u{7f}é€😀", "\u{2028}", all_controls.as_str()] {
            let mut out = String::new();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
            assert_eq!(parse(out.as_bytes()), Ok(Value::Str(s.to_owned())), "{s:?} reads back");
        }
        for n in [0, 1, 9, 10, 1234567890, u64::MAX] {
            let mut out = String::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        let mut out = String::new();
        let mut o = ObjectWriter::new(&mut out);
        o.str("a", "x").u64("b", 2);
        write_strs(o.member("c"), &["p".into(), "q".into()]);
        o.end();
        assert_eq!(out, r#"{"a":"x","b":2,"c":["p","q"]}"#);
    }

    /// With duplicates refused, the first repeated name in stream order
    /// decides, at any depth, and before any later syntax error.
    #[test]
    fn duplicates_are_refused_at_any_depth_in_stream_order() {
        let read = |doc: &str| {
            let mut r = Reader::refusing_duplicates(doc.as_bytes());
            r.skip().and_then(|()| r.end())
        };
        let rows: &[(&str, Result<(), Error>)] = &[
            (r#"{"a":1,"b":2}"#, Ok(())),
            (r#"{"a":1,"a":1}"#, Err(Error::Duplicate)),
            (r#"{"a":1,"\u0061":1}"#, Err(Error::Duplicate)),
            (r#"[{"x":{"a":1,"a":2}}]"#, Err(Error::Duplicate)),
            (r#"{"a":{"a":1},"b":{"a":1}}"#, Ok(())),
            (r#"{"a":1,"a":1} x"#, Err(Error::Duplicate)),
            (r#"{"a":1,"b":[} "#, Err(Error::Syntax("expected value"))),
        ];
        for (doc, want) in rows {
            assert_eq!(&read(doc), want, "{doc}");
        }
        // Without the option, a repeated name is the tree readers' concern.
        assert!(parse(br#"{"a":1,"a":1}"#).is_ok());
    }
}
