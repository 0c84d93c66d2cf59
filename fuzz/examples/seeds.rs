//! Writes the seed corpora `fuzz/corpus/<target>/` from the cases of the
//! test tables (tests/*.rs and the unit tests in src/), in each target's
//! input format (`tollgate_fuzz::cases`). Re-run after changing a format:
//!
//! ```text
//! cd fuzz && cargo run --example seeds
//! ```
//!
//! `token_mint` takes `arbitrary` input: its seeds are a minimized corpus
//! of a fuzzing run instead (`scripts/fuzz.sh` keeps them).

use std::fs;
use std::path::Path;
use tollgate::token::{mint, Algorithm, Claims, Key};
use tollgate_fuzz::cases::*;
use tollgate_fuzz::properties::token::{sign_raw, ISS, KEYS, NOW};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    fs::write(dir.join(name), bytes).expect("seed");
}

fn claims() -> Claims {
    Claims {
        iss: ISS.into(),
        sub: "alice".into(),
        aud: vec!["api".into()],
        exp: Some(NOW + 600),
        nbf: None,
        iat: Some(NOW - 10),
        jti: Some("t-1".into()),
        ver: 7,
        sid: Some("s1".into()),
        scope: Some("read write".into()),
        hosts: None,
    }
}

fn key(i: usize) -> Key {
    let (kid, alg, secret) = KEYS[i];
    Key::new(Some(kid.into()), alg, secret).unwrap()
}

fn token_verify() {
    let t = "token_verify";
    let good = mint(&key(0), &claims());
    write(t, "minted-k1", &encode_token_raw(0, good.as_bytes()));
    write(t, "minted-k2", &encode_token_raw(0, mint(&key(1), &claims()).as_bytes()));
    write(t, "minted-k3-time-skipped", &encode_token_raw(2, mint(&key(2), &claims()).as_bytes()));
    let lone = Key::new(None, Algorithm::HS256, KEYS[0].2).unwrap();
    write(t, "minted-without-kid", &encode_token_raw(1, mint(&lone, &claims()).as_bytes()));
    let mut api = claims();
    api.exp = None;
    api.aud = vec!["billing".into(), "api".into()];
    api.hosts = Some(vec!["192.0.2.0/24".into()]);
    write(t, "minted-never-expiring", &encode_token_raw(0, mint(&key(0), &api).as_bytes()));
    // RFC 7515 A.1 (another key: a MAC refusal), and the shapes of token_spec's tables.
    let rfc = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    write(t, "rfc7515-a1", &encode_token_raw(2, rfc.as_bytes()));
    for (name, raw) in [
        ("two-segments", "abc.def"),
        ("four-segments", "a.b.c.d"),
        ("impossible-length", "a.def.ghi"),
        ("header-not-json", "abc.def.ghi"),
        ("padded", "eyJhbGciOiJIUzI1NiJ9=.e30.AAAA"),
        ("empty", ""),
        ("dots", ".."),
    ] {
        write(t, name, &encode_token_raw(0, raw.as_bytes()));
    }
    let mut cut = good.clone();
    cut.truncate(good.len() - 3);
    write(t, "truncated-signature", &encode_token_raw(0, cut.as_bytes()));

    let h = br#"{"alg":"HS256","kid":"k1","typ":"at+jwt"}"#;
    let p = claims().to_json();
    let headers: [(&str, &[u8]); 12] = [
        ("header-kid", h),
        ("header-no-kid", br#"{"alg":"HS256","typ":"at+jwt"}"#),
        ("header-alg-none", br#"{"alg":"none","kid":"k1","typ":"at+jwt"}"#),
        ("header-alg-None", br#"{"alg":"None","typ":"at+jwt"}"#),
        ("header-crit", br#"{"alg":"HS256","kid":"k1","typ":"at+jwt","crit":["exp"]}"#),
        ("header-duplicate-alg", br#"{"alg":"HS256","alg":"HS256","kid":"k1","typ":"at+jwt"}"#),
        ("header-typ-application", br#"{"alg":"HS256","kid":"k1","typ":"application/AT+JWT"}"#),
        ("header-typ-jwt", br#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#),
        ("header-kid-number", br#"{"alg":"HS256","kid":1,"typ":"at+jwt"}"#),
        ("header-unknown-kid", br#"{"alg":"HS256","kid":"k9","typ":"at+jwt"}"#),
        ("header-alg-mismatch", br#"{"alg":"HS512","kid":"k1","typ":"at+jwt"}"#),
        ("header-nested-duplicate", br#"{"alg":"HS256","kid":"k1","typ":"at+jwt","jwk":{"a":1,"a":2}}"#),
    ];
    for (name, header) in headers {
        write(t, name, &encode_token_signed(0, 0, header, &p));
    }
    write(t, "header-k2-signed", &encode_token_signed(0, 1, br#"{"alg":"HS384","kid":"k2","typ":"at+jwt"}"#, &p));
    write(t, "header-single-key-any-kid", &encode_token_signed(1, 0, br#"{"alg":"HS256","kid":"whatever","typ":"at+jwt"}"#, &p));
    let n = |v: u64| v.to_string();
    let payloads: Vec<(&str, String)> = vec![
        ("payload-good", String::from_utf8(p.clone()).unwrap()),
        ("payload-exp-string", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":"{}","ver":1}}"#, NOW + 60)),
        ("payload-exp-float", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":{}.0,"ver":1}}"#, NOW + 60)),
        ("payload-exp-exponent", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":1e10,"ver":1}}"#)),
        ("payload-ver-negative", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":{},"ver":-1}}"#, NOW + 60)),
        ("payload-ver-huge", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":{},"ver":18446744073709551615}}"#, NOW + 60)),
        ("payload-ver-null", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":{},"ver":null}}"#, NOW + 60)),
        ("payload-aud-array", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":["x","billing"],"exp":{},"ver":1}}"#, NOW + 60)),
        ("payload-aud-mixed", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":["api",1],"exp":{},"ver":1}}"#, NOW + 60)),
        ("payload-duplicate-sub", format!(r#"{{"iss":"{ISS}","sub":"alice","sub":"bob","aud":"api","exp":{},"ver":1}}"#, NOW + 60)),
        ("payload-escaped-duplicate", format!(r#"{{"iss":"{ISS}","sub":"alice","s\u0075b":"bob","aud":"api","exp":{},"ver":1}}"#, NOW + 60)),
        ("payload-control-sub", format!(r#"{{"iss":"{ISS}","sub":"al\r\nice","aud":"api","exp":{},"ver":1}}"#, NOW + 60)),
        ("payload-c1-scope", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":{},"ver":1,"scope":"a\u0085b"}}"#, NOW + 60)),
        ("payload-expired", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":{},"ver":1}}"#, NOW - 31)),
        ("payload-nbf-future", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":{},"nbf":{},"ver":1}}"#, NOW + 600, NOW + 31)),
        ("payload-no-exp-sid", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","sid":"s","ver":1}}"#)),
        ("payload-hosts", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":{},"ver":1,"hosts":["10.0.0.0/8","*"]}}"#, NOW + 60)),
        ("payload-nested", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":{},"ver":1,"x":{{"y":[1,{{"z":null}}]}}}}"#, NOW + 60)),
        ("payload-max-date", format!(r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":{},"ver":9007199254740991}}"#, n(253_402_300_799))),
        ("payload-array", "[1,2]".into()),
        ("payload-trailing", format!(r#"{{"iss":"{ISS}"}} {{}}"#)),
        ("payload-bom", "\u{feff}{}".into()),
    ];
    for (name, payload) in payloads {
        write(t, name, &encode_token_signed(0, 0, h, payload.as_bytes()));
    }
    write(t, "payload-not-utf8", &encode_token_signed(0, 0, h, b"{\"sub\":\"\xff\"}"));
    // A signed token as raw input too: the fuzzer mutates real signatures.
    write(t, "raw-signed-hand-made", &encode_token_raw(0, sign_raw(0, h, &p).as_bytes()));
}

fn extract() {
    let t = "extract";
    let good = mint(&key(0), &claims());
    let all = "auth cookie=tg_access pair=token-code,token-user qname=access_token";
    let bearer = format!("Bearer {good}");
    let cases: Vec<(&str, &str, String, Vec<(&str, String)>)> = vec![
        ("bearer", all, "/x".into(), vec![("authorization", bearer.clone())]),
        ("bearer-case", all, "/x".into(), vec![("authorization", format!("bEaReR {good}"))]),
        ("cookie", all, "/x".into(), vec![("cookie", format!("a=b; tg_access={good}; c=d"))]),
        ("cookie-quoted", all, "/x".into(), vec![("cookie", format!("tg_access=\"{good}\""))]),
        ("pair", all, "/x".into(), vec![("token-code", good.clone()), ("token-user", "alice".into())]),
        ("pair-user-twice", all, "/x".into(), vec![("token-user", "bob".into()), ("token-code", good.clone()), ("token-user", "alice".into())]),
        ("basic-not-configured", all, "/x".into(), vec![("authorization", "Basic YTpi".into())]),
        ("basic-passthrough", "auth pass=Basic,Digest", "/x".into(), vec![("authorization", "Basic YTpi".into())]),
        ("basic-and-cookie", all, "/x".into(), vec![("authorization", "Basic YTpi".into()), ("cookie", format!("tg_access={good}"))]),
        ("tab-after-bearer", all, "/x".into(), vec![("authorization", format!("Bearer\t{good}"))]),
        ("two-spaces", all, "/x".into(), vec![("authorization", format!("Bearer  {good}"))]),
        ("bearer-twice", all, "/x".into(), vec![("authorization", format!("Bearer Bearer {good}"))]),
        ("empty-authorization", all, "/x".into(), vec![("authorization", String::new())]),
        ("bearer-alone", all, "/x".into(), vec![("authorization", "Bearer".into())]),
        ("same-token-twice", all, "/x".into(), vec![("authorization", bearer.clone()), ("cookie", format!("tg_access={good}"))]),
        ("two-tokens", all, "/x".into(), vec![("authorization", bearer.clone()), ("cookie", "tg_access=abc".into())]),
        ("joined-bearers", all, "/x".into(), vec![("authorization", format!("Bearer {good},Bearer abc"))]),
        ("joined-same", all, "/x".into(), vec![("authorization", format!("Bearer {good}, Bearer {good}"))]),
        ("query-off", all, format!("/x?access_token={good}"), vec![]),
        ("query-on", "query", format!("/x?a=1&access_token={good}&b"), vec![]),
        ("query-twice", "query qname=t", "/x?t=a&t=b".into(), vec![]),
        ("query-and-bearer", "auth query", format!("/x?access_token={good}"), vec![("authorization", bearer.clone())]),
        ("empty-cookie", all, "/x".into(), vec![("cookie", "tg_access=".into())]),
        ("padded-b64token", all, "/x".into(), vec![("authorization", "Bearer abc==".into())]),
        ("upper-case-name", all, "/x".into(), vec![("Authorization", bearer.clone())]),
        ("nothing", all, "/x".into(), vec![]),
    ];
    for (name, sources, path, headers) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        write(t, name, &encode_extract(sources, &path, &headers));
    }
}

fn request() {
    let paths = [
        "/", "/admin", "/admin/", "/admin/users?x=1", "/%61dmin/users", "/caf%C3%A9", "/a%20b", "/a.b/.well-known/x..y", "*",
        "admin", "", "/admin%2Fusers", "/admin%5cusers", "/public/..%2Fadmin/users", "/admin\\users", "/admin/./users",
        "/public/../admin/users", "/public/%2e%2e/admin/users", "/public/.%2E/admin", "/admin/..", "/.", "//admin/users",
        "/admin//users", "/admin;x/users", "/admin%3Bx/users", "/admin\tx", "/admin%00", "/admin%7f", "/admin%0A/users",
        "/admin#frag", "/admin%zz", "/admin%2", "/admin%", "/admin%252Fusers", "/%C3%28", "/%FF", "/%c2%85", "/a/%2e",
        "/adm\u{131}n", "/%E2%84%AAey", "/\u{17f}ecret", "/%C4%B0tem", "/caf\u{e9}/\u{212b}",
    ];
    for (i, p) in paths.iter().enumerate() {
        write("canonical_path", &format!("table-{i:02}"), p.as_bytes());
    }
    let t = "request_view";
    let cases: Vec<(&str, bool, Vec<(&str, &[u8])>)> = vec![
        ("get", true, vec![(":method", b"GET"), (":path", b"/admin/users?x=1"), ("authorization", b"Bearer abc")]),
        ("post-lower", true, vec![(":method", b"post"), (":path", b"/items")]),
        ("encoded-slash", true, vec![(":method", b"GET"), (":path", b"/admin%2Fusers")]),
        ("encoded-slash-lax", false, vec![(":method", b"GET"), (":path", b"/admin%2Fusers")]),
        ("dot-segment", true, vec![(":method", b"GET"), (":path", b"/public/%2e%2e/admin")]),
        ("override", true, vec![(":method", b"GET"), (":path", b"/x"), ("x-http-method-override", b"DELETE")]),
        ("override-underscore", true, vec![(":method", b"GET"), (":path", b"/x"), ("X_HTTP_Method", b"DELETE")]),
        ("override-lax", false, vec![(":method", b"GET"), (":path", b"/x"), ("x-method-override", b"DELETE")]),
        ("pair-underscore", true, vec![(":method", b"GET"), (":path", b"/x"), ("token_code", b"abc")]),
        ("pair-user-twice", true, vec![(":method", b"GET"), (":path", b"/x"), ("token-user", b"a"), ("token-user", b"b")]),
        ("refresh-underscore", true, vec![(":method", b"GET"), (":path", b"/x"), ("x_refresh_token", b"r")]),
        ("obs-text-other", true, vec![(":method", b"GET"), (":path", b"/x"), ("x-note", b"caf\xe9")]),
        ("obs-text-cookie", true, vec![(":method", b"GET"), (":path", b"/x"), ("cookie", b"a=\xe9")]),
        ("obs-text-path", true, vec![(":method", b"GET"), (":path", b"/caf\xe9")]),
        ("no-pseudo", true, vec![("host", b"example")]),
        ("star", true, vec![(":method", b"OPTIONS"), (":path", b"*")]),
        ("query-with-encoded", true, vec![(":method", b"GET"), (":path", b"/a?b=%2F..%2F")]),
        ("query-method-override", true, vec![(":method", b"POST"), (":path", b"/items?_method=DELETE")]),
        ("query-method-override-encoded", true, vec![(":method", b"POST"), (":path", b"/items?a=1&%5FMETHOD=delete")]),
        ("query-method-override-lax", false, vec![(":method", b"POST"), (":path", b"/items?_method=DELETE")]),
        ("query-method-lookalike", true, vec![(":method", b"POST"), (":path", b"/items?_methods=DELETE&x_method=1")]),
        ("case-folding", true, vec![(":method", b"GET"), (":path", b"/adm%C4%B1n")]),
    ];
    for (name, strict, headers) in cases {
        write(t, name, &encode_request(strict, &headers));
    }
}

fn config() {
    let t = "config";
    let secret = "ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24";
    let minimal = format!(r#"{{"issuer":"https://auth.test","audiences":["api"],"keys":[{{"kid":"k1","alg":"HS256","secret":"{secret}"}}]}}"#);
    write(t, "minimal", minimal.as_bytes());
    let with = |extra: &str| format!(r#"{{"issuer":"https://auth.test","audiences":["api"],"keys":[{{"kid":"k1","alg":"HS256","secret":"{secret}"}}],{extra}}}"#);
    let cases: Vec<(&str, String)> = vec![
        ("everything", with(r#""token_types":["at+jwt","application/at+jwt"],"clock_skew_seconds":0,"max_token_bytes":4096,"allow_never_expiring":true,"realm":"test","admin_scope":"tollgate:admin","sources":{"authorization_header":true,"cookie":"tg_access","header_pair":{"token":"Token-Code","user":"Token-User"},"query":{"enabled":true,"name":"access_token"},"passthrough_schemes":["Basic"]},"client_address":{"from":"x_forwarded_for","trusted_hops":1},"identity_headers":{"subject":"X-Sub","scope":"x-scope","session":"x-sid","version":"x-ver"},"forward_token":false,"strict_paths":true,"rules":[{"name":"health","path":{"exact":"/healthz"},"methods":["GET"],"anonymous":true},{"name":"admin","path":{"prefix":"/admin/"},"admin":true},{"path":{"regex":"/items/[0-9]+"},"methods":["POST"],"scopes":["write"],"ignore_case":true},{"path":{"prefix":"/live"},"fresh":true,"max_staleness_ms":100}],"authority":{"cluster":"authority","host":"tollgate-authority","timeout_ms":500,"credential_env":"EDGE_CREDENTIAL"},"revocation":{"sync_interval_ms":1000,"max_staleness_ms":5000,"on_stale":"allow"},"refresh":{"cookie":"tg_refresh","header":{"request":"X-Refresh-Token"},"refresh_before_seconds":30,"wait_ms":3000,"client_id":"tollgate-edge","share_ms":10000,"set_cookie":{"secure":true,"http_only":true,"same_site":"Strict","path":"/","domain":"example.com","refresh_max_age_seconds":60}}"#)),
        ("secret-env", format!(r#"{{"issuer":"i","audiences":["a"],"keys":[{{"kid":"a","alg":"HS256","secret_env":"GOOD_KEY"}},{{"kid":"b","alg":"HS256","secret":"{secret}="}}]}}"#)),
        ("secret-env-short", r#"{"issuer":"i","audiences":["a"],"keys":[{"alg":"HS256","secret_env":"SHORT_KEY"}]}"#.into()),
        ("secret-env-bad", r#"{"issuer":"i","audiences":["a"],"keys":[{"alg":"HS256","secret_env":"BAD_KEY"}]}"#.into()),
        ("secret-not-b64", r#"{"issuer":"i","audiences":["a"],"keys":[{"alg":"HS256","secret":"not base64! but a long secret"}]}"#.into()),
        ("hs512-short", format!(r#"{{"issuer":"i","audiences":["a"],"keys":[{{"alg":"HS512","secret":"{secret}"}}]}}"#)),
        ("credential-inline", with(r#""authority":{"cluster":"a","credential":"edge-credential-inline-fuzz-seed-0001"}"#)),
        ("credential-short", with(r#""authority":{"cluster":"a","credential":"short-credential"}"#)),
        ("credential-both", with(r#""authority":{"cluster":"a","credential":"edge-credential-inline-fuzz-seed-0001","credential_env":"EDGE_CREDENTIAL"}"#)),
        ("unknown-field", with(r#""isuser":"x""#)),
        ("duplicate-field", with(r#""realm":"a","realm":"b""#)),
        ("skew-too-large", with(r#""clock_skew_seconds":301"#)),
        ("skew-negative", with(r#""clock_skew_seconds":-1"#)),
        ("skew-float", with(r#""clock_skew_seconds":1.0"#)),
        ("realm-quote", with(r#""realm":"a\"b""#)),
        ("realm-escape", with(r#""realm":"caf\u00e9""#)),
        ("bad-regex", with(r#""rules":[{"path":{"regex":"(["}}]"#)),
        ("two-path-kinds", with(r#""rules":[{"path":{"exact":"/a","prefix":"/b"}}]"#)),
        ("bad-method", with(r#""rules":[{"path":{"prefix":"/"},"methods":["GET","P0ST"]}]"#)),
        ("revocation-without-authority", with(r#""revocation":{}"#)),
        ("refresh-no-mode", with(r#""authority":{"cluster":"a"},"refresh":{}"#)),
        ("same-site-none", with(r#""authority":{"cluster":"a"},"sources":{"cookie":"c"},"refresh":{"cookie":"r","set_cookie":{"same_site":"None","secure":false}}"#)),
        ("identity-repeat", with(r#""identity_headers":{"scope":"x-tollgate-sub"}"#)),
        ("every-source-off", with(r#""sources":{"authorization_header":false}"#)),
        ("passthrough-bearer", with(r#""sources":{"passthrough_schemes":["bearer"]}"#)),
        ("trusted-hops-huge", with(r#""client_address":{"from":"x_forwarded_for","trusted_hops":4294967295}"#)),
    ];
    for (name, doc) in cases {
        write(t, name, doc.as_bytes());
    }
    for (name, doc) in [("empty", ""), ("array", "[]"), ("open", "{"), ("two-documents", "{} {}"), ("null", "null")] {
        write(t, name, doc.as_bytes());
    }
    write(t, "trailing", format!("{minimal} x").as_bytes());
}

fn revocation() {
    let t = "revocation";
    let cases: Vec<(&str, Vec<(&str, &[u8])>)> = vec![
        ("feed-snapshot-then-lower", vec![
            ("feed 100000", br#"{"snapshot":true,"entries":[{"key":"sub:alice","min_ver":5,"expires_at":1000}],"cursor":"s.1"}"#),
            ("feed 101000", br#"{"snapshot":true,"entries":[{"key":"sub:alice","min_ver":3,"expires_at":900}],"cursor":"t.1"}"#),
        ]),
        ("new-store-floor", vec![
            ("feed 1000", br#"{"snapshot":true,"entries":[{"key":"sub:alice","min_ver":50,"expires_at":1000}],"cursor":"old.9","store":"old","floor":10}"#),
            ("feed 2000", br#"{"snapshot":true,"entries":[],"cursor":"new.1","store":"new","floor":100}"#),
            ("feed 3000", br#"{"snapshot":true,"entries":[],"cursor":"old.10","store":"old","floor":10}"#),
        ]),
        ("expiry", vec![
            ("feed 100000", br#"{"snapshot":false,"entries":[{"key":"sid:s1","min_ver":2,"expires_at":200}],"cursor":"s.1"}"#),
            ("feed 150000", br#"{"snapshot":true,"entries":[],"cursor":"s.2"}"#),
            ("feed 200000", br#"{"snapshot":false,"entries":[],"cursor":"s.3"}"#),
            ("prune 300", b""),
        ]),
        ("never-expiring", vec![
            ("feed 1000", br#"{"snapshot":true,"entries":[{"key":"sid:api1","min_ver":1,"expires_at":null},{"key":"sid:x","min_ver":1,"expires_at":5}],"cursor":"s.1"}"#),
            ("prune 18446744073709551614", b""),
            ("feed 2000", br#"{"snapshot":false,"entries":[{"key":"sid:api1","min_ver":1,"expires_at":10}],"cursor":"s.2"}"#),
            ("prune 11", b""),
        ]),
        ("forget-cursor", vec![
            ("feed 1", br#"{"snapshot":true,"entries":[{"key":"sub:a","min_ver":1,"expires_at":null}],"cursor":"s.1"}"#),
            ("feed 2", br#"{"snapshot":false,"entries":[{"key":"sub:a","min_ver":1,"expires_at":null}],"cursor":"s.1"}"#),
            ("forget", b""),
            ("forget", b""),
        ]),
        ("refusals", vec![
            ("feed 1", b"<html>"),
            ("feed 1", br#"{"snapshot":false,"entries":[{"key":"sub:a","min_ver":-1,"expires_at":null}],"cursor":"c"}"#),
            ("feed 1", br#"{"snapshot":false,"entries":[{"key":"usr:a","min_ver":1,"expires_at":null}],"cursor":"c"}"#),
            ("feed 1", br#"{"snapshot":true,"entries":[]}"#),
            ("feed 1", br#"{"snapshot":false,"entries":[{"key":"sub:a","min_ver":2,"expires_at":null,"x":1}],"cursor":"c"}"#),
            ("feed 1", br#"{"snapshot":false,"entries":[{"key":"sub:a","min_ver":2,"expires_at":null}],"cursor":"s.3","now":5}"#),
        ]),
        ("shared", vec![
            ("shared", br#"{"g":3,"c":"s.9","t":7,"f":0,"s":null,"e":[["sub:a",3,null],["sid:b",4,99]]}"#),
            ("feed 8", br#"{"snapshot":false,"entries":[{"key":"sub:a","min_ver":4,"expires_at":null}],"cursor":"s.10"}"#),
        ]),
        ("shared-garbage", vec![("shared", b"garbage"), ("shared", br#"{"g":1}"#)]),
        // Boundary values, as another plugin could write them: the fuzzer
        // combines them with the steps of the other seeds.
        ("shared-extremes", vec![("shared", br#"{"g":18446744073709551615,"c":"","t":18446744073709551615,"f":18446744073709551615,"s":"","e":[["sub:",18446744073709551615,18446744073709551615]]}"#)]),
        ("shared-near-extremes-then-feed", vec![
            ("shared", br#"{"g":18446744073709551614,"c":"s.1","t":18446744073709551614,"f":18446744073709551614,"s":"a","e":[["sub:a",18446744073709551614,18446744073709551614]]}"#),
            ("feed 18446744073709551614", br#"{"snapshot":false,"entries":[{"key":"sub:a","min_ver":18446744073709551615,"expires_at":18446744073709551615}],"cursor":"s.2","store":"a","floor":18446744073709551615}"#),
        ]),
        ("live", vec![
            ("live 1000 sub:a,sid:s", br#"{"versions":{"sub:a":3,"sid:s":0}}"#),
            ("live 2000 sub:a,sid:s", br#"{"versions":{"sub:a":1,"sid:s":0}}"#),
            ("live 3000 sub:a,sid:s", br#"{"versions":{"sub:a":9}}"#),
            ("live 3000 sub:a", b"<html>"),
        ]),
    ];
    for (name, steps) in cases {
        write(t, name, &encode_revocation(&steps));
    }
}

fn refresh() {
    let t = "refresh";
    let ok: &[u8] = br#"{"access_token":"a2","refresh_token":"r2","expires_in":900,"token_type":"Bearer"}"#;
    let answers: Vec<(&str, &str, &[u8])> = vec![
        ("answer-ok", "200", ok),
        ("answer-invalid-grant", "400", br#"{"error":"invalid_grant"}"#),
        ("answer-invalid-client", "401", br#"{"error":"invalid_client"}"#),
        ("answer-not-json", "400", b"not json"),
        ("answer-empty-object", "200", b"{}"),
        ("answer-empty-token", "200", br#"{"access_token":"","refresh_token":"r","expires_in":1}"#),
        ("answer-503", "503", ok),
        ("answer-none", "-", b""),
        ("answer-duplicate", "200", br#"{"access_token":"a","access_token":"b","refresh_token":"r","expires_in":1}"#),
    ];
    for (name, status, body) in answers {
        write(t, name, &encode_refresh(b'r', status, body));
    }
    use tollgate::refresh::{hash, Outcome, Shared, Slot, Tokens};
    let pair = Tokens { access_token: "a2".into(), refresh_token: "r2".into(), expires_in: 900 };
    let slots = [
        ("slot-claimed", Slot::Claimed { token: hash("r1"), until_ms: 100, by: 3 }),
        ("slot-claimed-by-me", Slot::Claimed { token: hash("r1"), until_ms: 100, by: 7 }),
        ("slot-done", Slot::Done { token: hash("r1"), outcome: Shared::seal(&Outcome::Refreshed(pair), "r1"), until_ms: 200 }),
        ("slot-rejected", Slot::Done { token: hash("r1"), outcome: Shared::Rejected, until_ms: 200 }),
        ("slot-failed", Slot::Done { token: hash("r1"), outcome: Shared::Unavailable, until_ms: 200 }),
        ("slot-other", Slot::Done { token: hash("r2"), outcome: Shared::Rejected, until_ms: 200 }),
    ];
    for (name, slot) in slots {
        write(t, name, &encode_refresh(b's', "50 r1", &slot.encode()));
    }
    write(t, "slot-garbage", &encode_refresh(b's', "0 r1", br#"{"Done":{"token":"x","outcome":{"Refreshed":"AAAA"},"until_ms":1}}"#));
    write(t, "open-short", &encode_refresh(b'o', "r1", b"AAAA"));
    write(t, "open-junk", &encode_refresh(b'o', "r1", b"!!!"));
    write(t, "seal", b"\x00\x00\x05\x00\x00\x00access-token-one\x0d\x00\x00\x00refresh-token\x84\x03\x00\x00\x00\x00\x00\x00r1\x02\x00\x00\x00r2");
}

/// `authority_input`: the bodies and headers of the authority's HTTP
/// tests and of `authority/src/input.rs`'s tables.
fn authority_input() {
    let t = "authority_input";
    let forms: &[(&str, &[u8])] = &[
        ("form-password", b"grant_type=password&username=alice&password=alice-demo&client_id=demo-client&scope=read+write"),
        ("form-client", b"grant_type=client_credentials&client_id=demo-client&client_secret=s%2Fecret"),
        ("form-refresh", b"grant_type=refresh_token&refresh_token=a%2Bb%2Fc%3Dd%26e&client_id=tollgate-edge"),
        ("form-revoke", b"token=eyJhbGciOiJIUzI1NiJ9.e30.sig"),
        ("form-empty-pieces", b"a=1&&b=&c"),
        ("form-repeated", b"a=1&%61=2"),
        ("form-bad-escape", b"a=%FF&b=%zz&c=100%"),
        ("form-empty-name", b"=1"),
        ("form-not-utf8", b"a=\xff"),
    ];
    for (name, body) in forms {
        write(t, name, &[b"f", *body].concat());
    }
    let basics = [
        ("basic-demo", tollgate_fuzz::authority::encode_basic("demo-client", "s3cret")),
        ("basic-encoded", tollgate_fuzz::authority::encode_basic("a:b&c", "d e+f")),
        ("basic-lower", "basic  ZGVtbzpzMw==".to_owned()),
        ("basic-bearer", "Bearer abc".to_owned()),
        ("basic-no-colon", "Basic bm8tY29sb24=".to_owned()),
    ];
    for (name, value) in basics {
        write(t, name, &[b"b", value.as_bytes()].concat());
    }
    let json: &[(&str, &[u8])] = &[
        ("json-ok", br#"{"sub":"bob","scope":"read","hosts":["*"],"days":-1,"name":"ci"}"#),
        ("json-minimal", br#"{"sub":"bob","hosts":["10.0.0.0/8"],"days":30}"#),
        ("json-unknown", br#"{"sub":"bob","hosts":["*"],"days":1,"scopes":"admin"}"#),
        ("json-repeated", br#"{"sub":"bob","sub":"eve","hosts":[],"days":1}"#),
        ("json-null-name", br#"{"sub":"bob","hosts":[],"days":1,"name":null}"#),
    ];
    for (name, body) in json {
        write(t, name, &[b"j", *body].concat());
    }
    write(t, "round-trip", b"ra+b/c=d&e\xfftollgate-edge\xffs:e c");
}

fn main() {
    authority_input();
    token_verify();
    extract();
    request();
    config();
    revocation();
    refresh();
    println!("seeds written under {}/corpus", env!("CARGO_MANIFEST_DIR"));
}
