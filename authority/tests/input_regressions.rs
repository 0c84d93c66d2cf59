//! Regression cases of the fuzz target `authority_input` (`fuzz/`), each
//! re-checked with the very property the target asserts
//! (`fuzz/src/authority.rs`, included below) and against the exact answer
//! expected now. A row records an input the target (or the writing of its
//! oracle) once failed on, and where the fix went.

use tollgate_authority::input;

#[path = "../../fuzz/src/authority.rs"]
#[allow(dead_code)]
mod properties;

use input::{basic_credentials, parse_form, ApiTokenRequest, BasicError, FormError};
use properties::{check_api_token, check_basic, check_case, check_form, check_round_trip, encode_basic, Check};

struct Row {
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

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

const ROWS: &[Row] = &[
    Row {
        found: "a raw & in Basic credentials ended the value: `client&x:secret&y` read as (client, secret), \
                an alias the RFC's encoding never produces",
        fix: "authority/src/input.rs: basic_credentials decodes each side as one form value",
        check: || {
            let value = format!("Basic {}", b64("client&x:secret&y"));
            check_basic(&value)?;
            expect(basic_credentials(&value), Ok(("client&x".to_owned(), "secret&y".to_owned())))
        },
    },
    Row {
        found: "a literal U+FFFD in a form value was refused as a decoding failure (the reader was lossy and \
                looked for the replacement character)",
        fix: "authority/src/input.rs: parse_form decodes exactly and refuses only bytes that are not UTF-8",
        check: || {
            let body = "a=\u{FFFD}".as_bytes();
            check_form(body)?;
            expect(parse_form(body).map(|f| f["a"].clone()), Ok("\u{FFFD}".to_owned()))
        },
    },
    Row {
        found: "the admin API echoed a whole unknown member name, controls included, in its error body",
        fix: "authority/src/input.rs: ApiTokenRequest::parse bounds the text and leaves controls out",
        check: || {
            let body = format!(r#"{{"sub":"b","hosts":[],"days":1,"{}\n":1}}"#, "x".repeat(500));
            check_api_token(body.as_bytes())?;
            let e = ApiTokenRequest::parse(body.as_bytes()).unwrap_err();
            expect(e.chars().count() <= input::MAX_ERROR_CHARS && !e.contains('\n'), true)
        },
    },
    Row {
        found: "the admin API read a JSON array positionally (`[\"bob\",\"read\",[\"*\"],-1,null]` minted a token): \
                serde's derive accepts a sequence for a struct",
        fix: "authority/src/input.rs: ApiTokenRequest::parse reads only an object",
        check: || {
            let body = br#"["bob","read",["*"],-1,null]"#;
            check_api_token(body)?;
            expect(ApiTokenRequest::parse(body), Err("body: must be a JSON object".to_owned()))
        },
    },
];

#[test]
fn every_finding_stays_fixed() {
    let mut failed = Vec::new();
    for row in ROWS {
        if let Err(why) = (row.check)() {
            failed.push(format!("{}\n  fix: {}\n  now: {why}", row.found, row.fix));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// The properties on the target's own seed inputs, written out, so a
/// change to the readers is judged here before any fuzzing.
#[test]
fn the_properties_hold_on_the_seeds() {
    let cases: Vec<Vec<u8>> = vec![
        b"fgrant_type=password&username=alice&password=p%40ss&scope=read+write".to_vec(),
        b"fa=1&&b=&c".to_vec(),
        b"fa=1&%61=2".to_vec(),
        b"fa=%FF".to_vec(),
        b"f=1".to_vec(),
        b"fa=\xff".to_vec(),
        [&b"b"[..], encode_basic("a:b&c", "d e+f").as_bytes()].concat(),
        b"bbasic  ZGVtbzpzMw==".to_vec(),
        b"bBearer abc".to_vec(),
        br#"j{"sub":"bob","scope":"read","hosts":["*"],"days":-1,"name":"ci"}"#.to_vec(),
        br#"j{"sub":"bob","sub":"eve","hosts":[],"days":1}"#.to_vec(),
        br#"j{"sub":"bob","hosts":[],"days":1,"name":null}"#.to_vec(),
        b"ra+b/c=d&e\xfftollgate-edge\xffs:e c".to_vec(),
    ];
    for case in cases {
        if let Err(why) = check_case(&case) {
            panic!("{:?}: {why}", String::from_utf8_lossy(&case));
        }
    }
    assert_eq!(parse_form(b"a=1&a=2"), Err(FormError::Repeated("a".into())));
    assert_eq!(basic_credentials("Bearer x"), Err(BasicError::NotBasic));
    check_round_trip("", "", "").unwrap();
    check_round_trip("\u{0}&=+%", "é:x", "\u{FFFD}").unwrap();
}
