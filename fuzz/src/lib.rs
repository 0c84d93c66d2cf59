//! Fuzzing Tollgate's parsers (issue 13). Run with `scripts/fuzz.sh`.
//!
//! - [`properties`]: what each target asserts (shared, through `#[path]`,
//!   with `tests/fuzz_regressions.rs`, which replays every finding);
//! - [`cases`]: how each target reads libFuzzer's bytes. The formats are
//!   plain (a flag byte, text lines, `---` between steps) so that seed
//!   inputs can be written from the test tables by `examples/seeds.rs`, and
//!   stay readable in `fuzz/corpus/`. `token_mint` and the `seal` mode of
//!   `refresh` take structured input through `arbitrary` instead: there,
//!   structure is the point and no seed is needed.

pub mod properties;

/// The authority's input readers, compiled as is (no server dependencies),
/// and their properties (shared with `authority/tests/input_regressions.rs`).
#[path = "../../authority/src/input.rs"]
pub mod input;
pub mod authority;

pub mod cases {
    use crate::properties::revocation::Step;
    use crate::properties::token::KeySetup;
    use arbitrary::Arbitrary;
    use tollgate::config::Sources;
    use tollgate::token::{ClaimRules, Claims, TimeCheck};

    /// Splits at the first `sep`; the whole input and nothing when absent.
    fn split_once<'a>(data: &'a [u8], sep: &[u8]) -> (&'a [u8], &'a [u8]) {
        match data.windows(sep.len()).position(|w| w == sep) {
            Some(i) => (&data[..i], &data[i + sep.len()..]),
            None => (data, &[]),
        }
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    // ── token_verify ──────────────────────────────────────────────────

    /// `flags` then the token. Flag bits: 0 = the single key without kid
    /// (else the rotation set), 1 = skip time checks, 2 = *signed* mode:
    /// the rest is `header 0xFF payload`, signed here with the key of
    /// bits 3-4 (the fuzzer cannot guess a MAC).
    #[derive(Debug)]
    pub enum TokenCase<'a> {
        Raw { setup: KeySetup, time: TimeCheck, token: &'a [u8] },
        Signed { setup: KeySetup, time: TimeCheck, key: usize, header: &'a [u8], payload: &'a [u8] },
    }

    pub fn token_case(data: &[u8]) -> Option<TokenCase<'_>> {
        let (&flags, rest) = data.split_first()?;
        let setup = if flags & 1 == 0 { KeySetup::Rotation } else { KeySetup::SingleWithoutKid };
        let time = if flags & 2 == 0 { TimeCheck::At(crate::properties::token::NOW) } else { TimeCheck::Skip };
        Some(if flags & 4 == 0 {
            TokenCase::Raw { setup, time, token: rest }
        } else {
            let (header, payload) = split_once(rest, &[0xff]);
            TokenCase::Signed { setup, time, key: usize::from((flags >> 3) & 3), header, payload }
        })
    }

    pub fn encode_token_raw(flags: u8, token: &[u8]) -> Vec<u8> {
        [&[flags & !4][..], token].concat()
    }

    pub fn encode_token_signed(flags: u8, key: u8, header: &[u8], payload: &[u8]) -> Vec<u8> {
        [&[((flags | 4) & 7) | ((key & 3) << 3)][..], header, &[0xff], payload].concat()
    }

    // ── token_mint ────────────────────────────────────────────────────

    #[derive(Debug, Arbitrary)]
    pub struct MintCase {
        pub key: u8,
        pub iss_is_configured: bool,
        pub iss: String,
        pub sub: String,
        pub aud: Vec<String>,
        pub configured_aud: bool,
        pub exp: Option<u64>,
        pub nbf: Option<u64>,
        pub iat: Option<u64>,
        pub jti: Option<String>,
        pub ver: u64,
        pub sid: Option<String>,
        pub scope: Option<String>,
        pub hosts: Option<Vec<String>>,
        /// `None`: skip time checks; `Some(d)`: check at the fixed clock
        /// moved by `d` seconds, so times fall around it.
        pub clock: Option<i32>,
        pub skew: u16,
        pub never_expiring: bool,
        pub corrupt_at: u16,
        pub corrupt_byte: u8,
        /// Time claims relative to the clock (else absolute values).
        pub relative_times: bool,
    }

    impl MintCase {
        /// The claims, the rules, the time: issuer and audience match the
        /// claims unless the case says otherwise.
        pub fn build(&self) -> (Claims, ClaimRules, TimeCheck) {
            let now = crate::properties::token::NOW.saturating_add_signed(i64::from(self.clock.unwrap_or(0)));
            let t = |v: Option<u64>| if self.relative_times { v.map(|d| now.saturating_add(d % 4000).saturating_sub(2000)) } else { v };
            let claims = Claims {
                iss: if self.iss_is_configured { crate::properties::token::ISS.into() } else { self.iss.clone() },
                sub: self.sub.clone(),
                aud: self.aud.clone(),
                exp: t(self.exp),
                nbf: t(self.nbf),
                iat: t(self.iat),
                jti: self.jti.clone(),
                ver: self.ver,
                sid: self.sid.clone(),
                scope: self.scope.clone(),
                hosts: self.hosts.clone(),
            };
            let mut audiences = vec!["api".to_owned()];
            if self.configured_aud {
                audiences.extend(self.aud.first().cloned());
            }
            let rules = ClaimRules {
                issuer: crate::properties::token::ISS.into(),
                audiences,
                clock_skew: u64::from(self.skew % 301),
                allow_never_expiring: self.never_expiring,
            };
            let time = if self.clock.is_some() { TimeCheck::At(now) } else { TimeCheck::Skip };
            (claims, rules, time)
        }
    }

    // ── token_cache ───────────────────────────────────────────────────

    /// A cache capacity, extra raw tokens, and steps: a token (an index
    /// into [`cache_pool`] followed by the extra tokens) presented at the
    /// fixed clock moved by some seconds.
    #[derive(Debug, Arbitrary)]
    pub struct CacheCase {
        pub capacity: u8,
        pub extra: Vec<String>,
        pub steps: Vec<(u8, i16)>,
    }

    impl CacheCase {
        pub fn steps(&self, pool: &[String]) -> Vec<(String, u64)> {
            let all: Vec<&String> = pool.iter().chain(&self.extra).collect();
            let now = crate::properties::token::NOW;
            self.steps
                .iter()
                .map(|&(i, d)| (all[usize::from(i) % all.len()].clone(), now.saturating_add_signed(i64::from(d))))
                .collect()
        }

        pub fn capacity(&self) -> usize {
            usize::from(self.capacity % 5)
        }
    }

    /// Tokens the cache meets: valid ones of every key, with time claims
    /// around the fixed clock (expiring soon, expired, not yet valid, never
    /// expiring), refused ones (audience, missing exp), and forgeries that
    /// share a valid token's MAC segment (the cache's key).
    pub fn cache_pool() -> Vec<String> {
        use crate::properties::token::{keys, KeySetup, ISS, NOW};
        use tollgate::token::{mint, Claims};
        let base = Claims {
            iss: ISS.into(),
            sub: "alice".into(),
            aud: vec!["api".into()],
            exp: Some(NOW + 600),
            nbf: None,
            iat: Some(NOW - 10),
            jti: None,
            ver: 1,
            sid: Some("s1".into()),
            scope: None,
            hosts: None,
        };
        let variants: Vec<Box<dyn Fn(&mut Claims)>> = vec![
            Box::new(|_| {}),
            Box::new(|c| c.exp = Some(NOW + 5)),
            Box::new(|c| c.exp = Some(NOW)),
            Box::new(|c| c.exp = Some(NOW - 40)),
            Box::new(|c| c.nbf = Some(NOW + 100)),
            Box::new(|c| c.iat = Some(NOW + 100)),
            Box::new(|c| c.exp = None),
            Box::new(|c| {
                c.exp = None;
                c.sid = None;
            }),
            Box::new(|c| c.aud = vec!["other".into()]),
            Box::new(|c| c.sub = "bob".into()),
        ];
        let mut pool = Vec::new();
        for key in keys(KeySetup::Rotation) {
            for edit in &variants {
                let mut c = base.clone();
                edit(&mut c);
                pool.push(mint(&key, &c));
            }
        }
        // Same MAC segment, another payload: same cache key, never valid.
        let forged: Vec<String> = pool
            .iter()
            .take(3)
            .map(|t| {
                let mut parts: Vec<&str> = t.split('.').collect();
                let payload = crate::properties::token::enc(br#"{"iss":"x"}"#);
                parts[1] = &payload;
                parts.join(".")
            })
            .collect();
        pool.extend(forged);
        pool
    }

    // ── extract ───────────────────────────────────────────────────────

    /// Line 1: the sources, words among `auth`, `cookie=NAME`,
    /// `pair=TOKEN,USER`, `query`, `qname=NAME`, `pass=A,B`. Line 2: the
    /// path. Every further line: `name:value` (name as given: Envoy hands
    /// over lower-case names, the fuzzer may not).
    #[derive(Debug)]
    pub struct ExtractCase {
        pub sources: Sources,
        pub path: String,
        pub headers: Vec<(String, String)>,
    }

    pub fn extract_case(data: &[u8]) -> ExtractCase {
        let data = text(data);
        let mut lines = data.split('\n');
        let mut sources = Sources {
            authorization_header: false,
            cookie: None,
            header_pair: None,
            query_enabled: false,
            query_name: "access_token".into(),
            passthrough_schemes: vec![],
        };
        for word in lines.next().unwrap_or("").split(' ') {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            match k {
                "auth" => sources.authorization_header = true,
                "cookie" => sources.cookie = Some(v.into()),
                "pair" => sources.header_pair = v.split_once(',').map(|(t, u)| (t.into(), u.into())),
                "query" => sources.query_enabled = true,
                "qname" => sources.query_name = v.into(),
                "pass" => sources.passthrough_schemes = v.split(',').map(str::to_ascii_lowercase).collect(),
                _ => {}
            }
        }
        let path = lines.next().unwrap_or("").to_owned();
        let headers = lines.map(|l| l.split_once(':').map_or((l.into(), String::new()), |(n, v)| (n.into(), v.into()))).collect();
        ExtractCase { sources, path, headers }
    }

    pub fn encode_extract(sources: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = format!("{sources}\n{path}");
        for (n, v) in headers {
            out.push_str(&format!("\n{n}:{v}"));
        }
        out.into_bytes()
    }

    // ── request_view ──────────────────────────────────────────────────

    /// Byte 0: the configuration (even: strict paths, odd: not). Then
    /// header lines, `name:value` split at the first `:` after the first
    /// byte (so `:path:/x` is `:path` = `/x`); values are bytes.
    pub fn request_case(data: &[u8]) -> Option<(usize, Vec<(String, Vec<u8>)>)> {
        let (&which, rest) = data.split_first()?;
        let mut headers = Vec::new();
        for line in rest.split(|&b| b == b'\n') {
            let cut = line.iter().skip(1).position(|&b| b == b':').map_or(line.len(), |i| i + 1);
            let name = String::from_utf8(line[..cut].to_vec()).ok()?;
            let value = line.get(cut + 1..).unwrap_or_default().to_vec();
            headers.push((name, value));
        }
        Some((usize::from(which & 1), headers))
    }

    pub fn encode_request(strict: bool, headers: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = vec![u8::from(!strict)];
        for (i, (n, v)) in headers.iter().enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            out.extend_from_slice(n.as_bytes());
            out.push(b':');
            out.extend_from_slice(v);
        }
        out
    }

    // ── revocation ────────────────────────────────────────────────────

    /// Steps separated by `\n---\n`; each is a command line, then a body:
    /// `feed NOW_MS` + feed body; `shared` + shared-data bytes;
    /// `live NOW_MS KEY,KEY` + versions answer; `prune NOW_S`; `forget`.
    pub fn revocation_steps(data: &[u8]) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let (step, tail) = split_once(rest, b"\n---\n");
            rest = tail;
            let (command, body) = split_once(step, b"\n");
            let command = text(command);
            let mut words = command.split(' ');
            let number = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
            steps.push(match words.next().unwrap_or("") {
                "feed" => Step::Body { body: body.to_vec(), now_ms: number(words.next()) },
                "shared" => Step::Shared { bytes: body.to_vec() },
                "live" => {
                    let now_ms = number(words.next());
                    let asked = words.next().unwrap_or("").split(',').map(str::to_owned).collect();
                    Step::Live { asked, body: body.to_vec(), now_ms }
                }
                "prune" => Step::Prune { now_s: number(words.next()) },
                "forget" => Step::ForgetCursor,
                _ => continue,
            });
        }
        steps
    }

    pub fn encode_revocation(steps: &[(&str, &[u8])]) -> Vec<u8> {
        let parts: Vec<Vec<u8>> = steps.iter().map(|(c, b)| [c.as_bytes(), b"\n", b].concat()).collect();
        parts.join(&b"\n---\n"[..])
    }

    // ── refresh ───────────────────────────────────────────────────────

    #[derive(Debug, Arbitrary)]
    pub struct SealCase {
        pub outcome: u8,
        pub access_token: String,
        pub refresh_token: String,
        pub expires_in: u64,
        pub presented: String,
        pub other: String,
        pub now_ms: u32,
        pub flip: u16,
    }

    /// Byte 0 picks the mode: `r` a token-endpoint answer (then the status
    /// as text, `-` for none, a newline, the body); `s` a shared slot (then
    /// `NOW_MS REFRESH_TOKEN`, a newline, the slot bytes); `o` a sealed text
    /// to open (then the refresh token, a newline, the text); anything else
    /// a [`SealCase`] from the rest, through `arbitrary`.
    #[derive(Debug)]
    pub enum RefreshCase<'a> {
        Response { status: Option<u16>, body: &'a [u8] },
        Slot { now_ms: u64, refresh_token: String, bytes: &'a [u8] },
        Open { refresh_token: String, text: String },
        Seal(SealCase),
    }

    pub fn refresh_case(data: &[u8]) -> Option<RefreshCase<'_>> {
        let (&mode, rest) = data.split_first()?;
        let (line, body) = split_once(rest, b"\n");
        let line = text(line);
        Some(match mode {
            b'r' => RefreshCase::Response { status: line.parse().ok(), body },
            b's' => {
                let (now, token) = line.split_once(' ').unwrap_or((&line, ""));
                // A host clock, not an input: below 2^53 ms.
                let now_ms = now.parse::<u64>().unwrap_or(0) % (1 << 53);
                RefreshCase::Slot { now_ms, refresh_token: token.into(), bytes: body }
            }
            b'o' => RefreshCase::Open { refresh_token: line, text: text(body) },
            _ => RefreshCase::Seal(SealCase::arbitrary(&mut arbitrary::Unstructured::new(rest)).ok()?),
        })
    }

    pub fn encode_refresh(mode: u8, line: &str, body: &[u8]) -> Vec<u8> {
        [&[mode][..], line.as_bytes(), b"\n", body].concat()
    }
}
