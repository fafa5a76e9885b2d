//! The typed `backend` metadata: every shape round-trips, credentials never show.

use flist_format::{Backend, FormatError, Metadata};

fn parse(s: &str) -> Backend {
    Backend::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn every_shape_round_trips() {
    let shapes = [
        // reference `zflist metadata backend --host --port`
        (r#"{"host": "127.0.0.1", "port": 9901}"#, true),
        (
            r#"{"host": "hub.grid.tf", "port": 9900, "namespace": "default"}"#,
            true,
        ),
        (
            r#"{"host": "h", "port": 9900, "namespace": "ns", "password": "pw"}"#,
            true,
        ),
        (r#"{"host": "h", "port": 1, "token": "t"}"#, true),
        // the socket form the reference writes with --socket
        (
            r#"{"socket": "/run/zdb.sock", "namespace": "ns", "password": "pw", "host": "hub.grid.tf", "port": 0}"#,
            true,
        ),
        // what a hub serving its own chunks stamps
        (r#"{"url": "http://127.0.0.1:5555/chunks"}"#, true),
        (r#"{"url": "https://hub.example/chunks"}"#, true),
        // accepted, normalised on write
        (r#"{"host": "h", "port": "9901", "namespace": "n"}"#, false),
        (r#"{"port":9900,"host":"h"}"#, false),
        (r#"{"host": "h"}"#, false),
        (r#"{"host": "[::1]", "port": 9900}"#, false),
        (r#"{"url": "http://hub/chunks/"}"#, false),
        (r#"{"host": "h", "port": 9900, "namespace": ""}"#, false),
    ];
    for (text, exact) in shapes {
        let b = parse(text);
        let again = b.to_json();
        if exact {
            assert_eq!(again, text, "reference bytes of {text}");
        }
        assert_eq!(parse(&again), b, "{text} -> {again}");
        // through the metadata accessors too
        let mut md = Metadata::new();
        md.set_backend(&b);
        assert_eq!(md.backend().expect("valid"), Some(b.clone()));
        // the public form never carries credentials and parses back
        let public = b.to_public_value().to_string();
        assert!(
            !public.contains("pw") && !public.contains("\"t\""),
            "{public}"
        );
        assert_eq!(Backend::parse(&public).expect("public parses"), b.public());
    }
}

#[test]
fn ports_numeric_or_string_and_defaults() {
    assert_eq!(
        parse(r#"{"host": "h", "port": "9901"}"#),
        Backend::zdb("h", 9901, None)
    );
    assert_eq!(parse(r#"{"host": "h"}"#), Backend::zdb("h", 9900, None));
    assert_eq!(
        parse(r#"{"host": "[::1]", "port": 1}"#),
        Backend::zdb("::1", 1, None)
    );
    assert_eq!(
        parse(r#"{"url": "http://hub:5555/chunks/"}"#),
        Backend::Http {
            url: "http://hub:5555/chunks".into()
        }
    );
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    for (text, why) in [
        ("not json", "not valid JSON"),
        ("[1]", "not a JSON object"),
        ("{}", "no \"host\""),
        (r#"{"host": 1}"#, "\"host\" is not a string"),
        (r#"{"host": "h", "port": 70000}"#, "0..=65535"),
        (r#"{"host": "h", "port": "x"}"#, "not a number"),
        (r#"{"host": "h", "port": true}"#, "not a number"),
        (r#"{"host": "h", "namespace": "a b"}"#, "bad namespace"),
        (r#"{"host": "h\nx"}"#, "bad host"),
        (r#"{"url": "ftp://x/y"}"#, "not an http"),
        (r#"{"url": "http://u:p@x/y"}"#, "credentials"),
        (r#"{"url": "http:///y"}"#, "no host"),
        (
            r#"{"url": "http://x/y", "host": "h"}"#,
            "cannot be combined",
        ),
    ] {
        match Backend::parse(text) {
            Err(FormatError::Metadata { key, reason }) => {
                assert_eq!(key, "backend");
                assert!(reason.contains(why), "{text}: {reason}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn credentials_never_displayed() {
    let b = parse(
        r#"{"host": "h", "port": 9900, "namespace": "ns", "password": "s3cret", "token": "tok3n"}"#,
    );
    assert!(b.has_credentials());
    for shown in [
        b.to_string(),
        format!("{b:?}"),
        b.to_public_value().to_string(),
        b.storage_line(),
    ] {
        assert!(
            !shown.contains("s3cret") && !shown.contains("tok3n"),
            "{shown}"
        );
    }
    assert_eq!(b.to_string(), "zdb://:***@h:9900/ns");
    assert_eq!(b.storage_line(), "zdb://h:9900");
    assert!(!b.public().has_credentials());
    // the stored form keeps it (it is the flist author's choice to publish a read password)
    assert!(b.to_json().contains("s3cret"));
    let s = parse(r#"{"socket": "/s", "password": "s3cret", "host": "x", "port": 0}"#);
    assert_eq!(s.to_string(), "zdb+unix:///s?ns=default&password=***");
    assert!(!format!("{s:?}").contains("s3cret"));
    let h = Backend::http("https://hub.example/chunks").expect("url");
    assert_eq!(h.storage_line(), "https://hub.example/chunks");
}
