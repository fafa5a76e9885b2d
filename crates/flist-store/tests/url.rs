//! Store URL parsing and redaction.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::PathBuf;

use flist_store::{Endpoint, Route, StoreError, StoreUrl};

fn parse(s: &str) -> StoreUrl {
    StoreUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn zdb_urls() {
    assert_eq!(
        parse("zdb://hub.grid.tf"),
        StoreUrl::Zdb {
            endpoint: Endpoint::Tcp {
                host: "hub.grid.tf".into(),
                port: 9900
            },
            namespace: "default".into(),
            password: None
        }
    );
    let u = parse("zdb://:p%40ss@10.0.0.1:9901/chunks");
    assert_eq!(
        u,
        StoreUrl::Zdb {
            endpoint: Endpoint::Tcp {
                host: "10.0.0.1".into(),
                port: 9901
            },
            namespace: "chunks".into(),
            password: Some("p@ss".into())
        }
    );
    assert_eq!(u.to_string(), "zdb://:***@10.0.0.1:9901/chunks");
    let v6 = parse("zdb://[::1]:9900/ns");
    assert_eq!(v6.to_string(), "zdb://[::1]:9900/ns");
    let unix = parse("zdb+unix:///run/zdb.sock?ns=files&password=x");
    assert_eq!(
        unix,
        StoreUrl::Zdb {
            endpoint: Endpoint::Unix {
                path: PathBuf::from("/run/zdb.sock")
            },
            namespace: "files".into(),
            password: Some("x".into())
        }
    );
    assert_eq!(
        unix.to_string(),
        "zdb+unix:///run/zdb.sock?ns=files&password=***"
    );
}

#[test]
fn redis_dir_http_s3() {
    assert_eq!(
        parse("redis://:pw@localhost/3"),
        StoreUrl::Redis {
            endpoint: Endpoint::Tcp {
                host: "localhost".into(),
                port: 6379
            },
            db: 3,
            username: None,
            password: Some("pw".into())
        }
    );
    assert_eq!(
        parse("redis://:pw@localhost/3").to_string(),
        "redis://:***@localhost:6379/3"
    );
    assert_eq!(
        parse("redis://user:pw@h:1").to_string(),
        "redis://user:***@h:1/0"
    );
    assert_eq!(
        parse("dir:///var/cache/chunks"),
        StoreUrl::Dir {
            path: "/var/cache/chunks".into(),
            fsync: false
        }
    );
    assert_eq!(
        parse("dir:///x?fsync=1"),
        StoreUrl::Dir {
            path: "/x".into(),
            fsync: true
        }
    );
    assert_eq!(
        parse("https://hub.example/chunks/"),
        StoreUrl::Http {
            base: "https://hub.example/chunks".into()
        }
    );
    assert_eq!(
        parse("https://u:secret@hub.example/c").to_string(),
        "https://u:***@hub.example/c"
    );
    let s3 = parse("s3://key:secret@garage:3900/bucket");
    assert_eq!(s3.to_string(), "s3://key:***@garage:3900/bucket");
}

#[tokio::test]
async fn urls_parse_like_rfs_and_never_show_the_secret() {
    let u = StoreUrl::parse("s3://AK:s3cr3t@127.0.0.1:9000/my-bucket?region=minio").unwrap();
    assert_eq!(
        u,
        StoreUrl::S3 {
            tls: false,
            host: "127.0.0.1".into(),
            port: 9000,
            bucket: "my-bucket".into(),
            region: Some("minio".into()),
            key: Some("AK".into()),
            secret: Some("s3cr3t".into()),
        }
    );
    assert_eq!(
        u.to_string(),
        "s3://AK:***@127.0.0.1:9000/my-bucket?region=minio"
    );
    for tls in ["s3s://AK:s3cr3t@h/b12", "s3+tls://AK:s3cr3t@h/b12"] {
        let u = StoreUrl::parse(tls).unwrap();
        assert!(
            matches!(
                u,
                StoreUrl::S3 {
                    tls: true,
                    port: 443,
                    ..
                }
            ),
            "{u:?}"
        );
        assert_eq!(u.to_string(), "s3s://AK:***@h:443/b12");
    }
    // A lone userinfo is the access key (secret from the environment).
    let u = StoreUrl::parse("s3://AK@h:80/bucket").unwrap();
    assert!(
        matches!(&u, StoreUrl::S3 { key: Some(k), secret: None, .. } if k == "AK"),
        "{u:?}"
    );
    for bad in [
        "s3://AK:s3cr3t@h:9000",
        "s3://AK:s3cr3t@h:9000/",
        "s3://AK:s3cr3t@h:9000/UPPER",
        "s3://AK:s3cr3t@h:9000/a",
        "s3://AK:s3cr3t@h:notaport/bucket",
    ] {
        let e = StoreUrl::parse(bad).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }
    // Opening makes no request; an unreachable server is an error at the first operation.
    let s = flist_store::open("s3://AK:s3cr3t@127.0.0.1:1/bucket")
        .await
        .unwrap();
    assert_eq!(s.to_string(), "s3://AK:***@127.0.0.1:1/bucket");
    let e = s.get(b"\x01").await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(!format!("{e} {e:?} {s:?}").contains("s3cr3t"), "{e}");
}

#[test]
fn bad_urls() {
    for bad in [
        "",
        "zdb:/x",
        "ftp://x",
        "zdb://:pw@",
        "zdb://host:99999",
        "zdb://host:abc",
        "redis://h/notanumber",
        "dir://",
        "https:///nohost",
        "zdb+unix://relative",
        "zdb://h/bad ns",
        "zdb://h:1/%zz",
    ] {
        let err = StoreUrl::parse(bad).expect_err(bad);
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{bad}: {err}");
    }
    // Credentials never appear in parse errors.
    let err = StoreUrl::parse("zdb://:hunter2@host:nope/x").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn routers() {
    let r = parse("00-7f=zdb://a,80-ff=zdb://:pw@b:1/ns");
    let StoreUrl::Router(routes) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(routes.len(), 2);
    assert_eq!((routes[0].first, routes[0].last), (0x00, 0x7f));
    assert_eq!((routes[1].first, routes[1].last), (0x80, 0xff));
    assert_eq!(
        r.to_string(),
        "00-7f=zdb://a:9900/default,80-ff=zdb://:***@b:1/ns"
    );
    // The same as several --store values, and single-byte ranges.
    let many = StoreUrl::parse_list(&["00-7f=zdb://a", "80-ff=zdb://:pw@b:1/ns"]).unwrap();
    assert_eq!(many, r);
    let single = StoreUrl::parse_list(&["00-fe=dir:///a", "ff=dir:///b"]).unwrap();
    let StoreUrl::Router(routes) = single else {
        panic!()
    };
    assert_eq!(
        routes[1],
        Route {
            first: 0xff,
            last: 0xff,
            store: parse("dir:///b")
        }
    );
    // A plain URL alone stays a plain store.
    assert_eq!(
        StoreUrl::parse_list(&["dir:///a"]).unwrap(),
        parse("dir:///a")
    );
    // Gaps, empty ranges and non-range items are refused.
    for bad in [
        &["00-7f=zdb://a"][..],
        &["00-ff=zdb://a", "zdb://b"],
        &["80-00=zdb://a"],
    ] {
        let err = StoreUrl::parse_list(bad).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidUrl { .. }),
            "{bad:?}: {err}"
        );
    }
    let err = StoreUrl::parse("00-7f=zdb://a,90-ff=zdb://b").unwrap_err();
    assert!(err.to_string().contains("80-8f"), "{err}");
}
