//! The web app driven in a real headless Chromium through WebDriver (Debian's `chromium` and
//! `chromium-driver`). One hub and one chromedriver serve the whole binary; each test opens
//! its own browser (fresh profile) and saves a screenshot under
//! `target/browser-screenshots/` when it fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use flist_format::{Flist, Kind, Meta, Metadata, Tree};
use hub_repo::{Actor, TokenCheck};
use serde_json::json;

type Res<T = ()> = Result<T, String>;

struct World {
    rt: tokio::runtime::Runtime,
    hub: common::TestHub,
    driver_port: u16,
    /// The watchdog shell owning chromedriver (it exits with this process).
    _watchdog: std::process::Child,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let hub = rt.block_on(common::TestHub::start());
        let driver_port = test_support::redis::free_port();
        // chromedriver lives as long as this test process: a watchdog shell ends it (and
        // the hub's data directory) when the process is gone.
        let script = format!(
            "chromedriver --port={driver_port} --allowed-ips=127.0.0.1 >/dev/null 2>&1 & CD=$!; \
             while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $CD; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = hub.dir.path().display(),
        );
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", driver_port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        World {
            rt,
            hub,
            driver_port,
            _watchdog: watchdog,
        }
    })
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| test_support::workspace_root().join("target"));
    target.join("browser-screenshots")
}

async fn open_browser(port: u16, width: u32, height: u32) -> Res<(Client, tempfile::TempDir)> {
    // More than one rustls crypto backend is linked in: pick one for the WebDriver client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.path().display()),
                format!("--window-size={width},{height}"),
            ]
        }),
    );
    let c = ClientBuilder::rustls()
        .map_err(|e| e.to_string())?
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .map_err(|e| format!("WebDriver session: {e}"))?;
    Ok((c, profile))
}

/// Runs one browser scenario; on failure saves a screenshot and panics with the reason.
fn browser_test<F, Fut>(name: &str, f: F)
where
    F: FnOnce(Client, &'static World) -> Fut,
    Fut: Future<Output = Res>,
{
    // One browser at a time: the machine is small and the hub is shared.
    static ONE: Mutex<()> = Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let w = world();
    let result = w.rt.block_on(async {
        let (c, _profile) = open_browser(w.driver_port, 1280, 900).await?;
        let r = f(c.clone(), w).await;
        if r.is_err() {
            let dir = screenshot_dir();
            let _ = std::fs::create_dir_all(&dir);
            if let Ok(png) = c.screenshot().await {
                let _ = std::fs::write(dir.join(format!("{name}.png")), png);
            }
        }
        let _ = c.close().await;
        r
    });
    if let Err(e) = result {
        panic!(
            "{name}: {e} (screenshot: {})",
            screenshot_dir().join(format!("{name}.png")).display()
        );
    }
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn wait_css(c: &Client, css: &str) -> Res<fantoccini::elements::Element> {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .map_err(err(&format!("waiting for {css}")))
}

async fn text_of(c: &Client, css: &str) -> Res<String> {
    wait_css(c, css)
        .await?
        .text()
        .await
        .map_err(err(&format!("text of {css}")))
}

async fn goto(c: &Client, w: &World, path: &str) -> Res {
    c.goto(&w.hub.url(path))
        .await
        .map_err(err(&format!("goto {path}")))
}

async fn wait_url(c: &Client, suffix: &str) -> Res<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let u = c.current_url().await.map_err(err("url"))?;
        if u.as_str().ends_with(suffix) {
            return Ok(u.to_string());
        }
        if Instant::now() > deadline {
            return Err(format!("still on {u}, expected …{suffix}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `css` reads `want` (the element may belong to the page being left, then to
/// the next one: a stale element is read again).
async fn wait_text(c: &Client, css: &str, want: &str) -> Res {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if t == want {
                    return Ok(());
                }
                last = t;
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{css} reads {last:?}, expected {want:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ensure(cond: bool, what: impl Into<String>) -> Res {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// Signs `user` in through the login page's API-token form.
async fn sign_in(c: &Client, w: &World, user: &str) -> Res {
    let token = w.hub.token(user, &[]).await;
    goto(c, w, "/login-method").await?;
    wait_css(c, "#login-token")
        .await?
        .send_keys(&token)
        .await
        .map_err(err("type token"))?;
    wait_css(c, "#token-signin")
        .await?
        .click()
        .await
        .map_err(err("submit"))?;
    wait_css(c, "#signout").await?;
    Ok(())
}

fn meta(mode: u32) -> Meta {
    Meta::root(mode, 1_700_000_000)
}

fn file(size: u64) -> Kind {
    Kind::File {
        size,
        blocks: vec![],
    }
}

/// Stores `tree` with `metadata` as `repo/name` straight through the catalog.
async fn put_tree(w: &World, repo: &str, name: &str, tree: Tree, metadata: Metadata) {
    let hub = w.hub.hub();
    let tmp = w.hub.dir.path().join(format!("put-{repo}-{name}"));
    let (repo, name) = (repo.to_string(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let fl = Flist { tree, metadata };
        fl.write(&tmp).unwrap();
        let staged = hub.catalog().stage_file(&tmp).unwrap();
        hub.catalog()
            .put_flist(
                &Actor::new(repo.clone(), vec![]),
                &repo,
                &name,
                staged,
                hub_repo::inspect::info_of(&fl, None),
            )
            .unwrap();
    })
    .await
    .unwrap();
}

#[test]
fn sign_in_with_an_api_token_and_out() {
    browser_test("sign_in", |c, w| async move {
        // A token the hub never issued is refused with the reason on the login page.
        goto(&c, w, "/login-method").await?;
        wait_css(&c, "#login-token")
            .await?
            .send_keys("not-a-real-token")
            .await
            .map_err(err("type"))?;
        wait_css(&c, "#token-signin")
            .await?
            .click()
            .await
            .map_err(err("click"))?;
        let flash = text_of(&c, "#flash").await?;
        ensure(
            flash.contains("not a token of this hub"),
            format!("refusal says why: {flash:?}"),
        )?;
        ensure(
            c.find(Locator::Css("#signout")).await.is_err(),
            "not signed in after a bad token",
        )?;

        sign_in(&c, w, "alice").await?;
        let selected = c
            .execute(
                "return document.querySelector('select[name=active]').value",
                vec![],
            )
            .await
            .map_err(err("switcher"))?;
        ensure(
            selected == json!("alice"),
            format!("acting as alice: {selected}"),
        )?;
        ensure(
            c.find(Locator::Css("#signin")).await.is_err(),
            "no Sign in link once signed in",
        )?;
        wait_css(&c, "#signout")
            .await?
            .click()
            .await
            .map_err(err("sign out"))?;
        wait_css(&c, "#signin").await?;
        ensure(
            c.find(Locator::Css("#signout")).await.is_err(),
            "signed out",
        )
    });
}

#[test]
fn sign_in_with_a_local_password() {
    browser_test("password_sign_in", |c, w| async move {
        let hub = w.hub.hub();
        tokio::task::spawn_blocking(move || {
            hub.accounts()
                .user_add("carol", "carol's long password", false)
        })
        .await
        .map_err(err("join"))?
        .map_err(err("user add"))?;
        // The login page now offers the account form; a wrong password is refused on it.
        goto(&c, w, "/login-method?next=/token").await?;
        let fill = |user: &'static str, pw: &'static str| {
            let c = c.clone();
            async move {
                wait_css(&c, "#password-login input[name=username]")
                    .await?
                    .send_keys(user)
                    .await
                    .map_err(err("type user"))?;
                wait_css(&c, "#password-login input[name=password]")
                    .await?
                    .send_keys(pw)
                    .await
                    .map_err(err("type password"))?;
                wait_css(&c, "#password-login button")
                    .await?
                    .click()
                    .await
                    .map_err(err("submit"))
            }
        };
        fill("carol", "not her password").await?;
        let refusal = text_of(&c, "#login-error").await?;
        ensure(
            refusal.contains("Wrong user name or password"),
            format!("refusal says why: {refusal:?}"),
        )?;
        ensure(
            c.find(Locator::Css("#signout")).await.is_err(),
            "not signed in after a wrong password",
        )?;
        // The refused page keeps where to go; the right password leads there, signed in.
        fill("carol", "carol's long password").await?;
        wait_url(&c, "/token").await?;
        wait_css(&c, "#signout").await?;
        let selected = c
            .execute(
                "return document.querySelector('select[name=active]').value",
                vec![],
            )
            .await
            .map_err(err("switcher"))?;
        ensure(
            selected == json!("carol"),
            format!("acting as carol: {selected}"),
        )?;
        // The session is an HttpOnly cookie: page scripts cannot read it.
        let cookies = c
            .execute("return document.cookie", vec![])
            .await
            .map_err(err("cookie"))?;
        ensure(
            !cookies.as_str().unwrap_or_default().contains("hub-session"),
            format!("session cookie hidden from scripts: {cookies}"),
        )
    });
}

#[test]
fn upload_a_targz_through_the_form_and_land_on_its_page() {
    browser_test("upload", |c, w| async move {
        let dir = tempfile::tempdir().map_err(err("tempdir"))?;
        let mut t = test_support::archive::RawTar::new();
        t.dir("etc/")
            .file("etc/motd", b"welcome to the browser test\n")
            .dir("usr/")
            .dir("usr/bin/")
            .file("usr/bin/browser-tool", b"#!/bin/sh\necho hi\n");
        let path = dir.path().join("webapp-1.0.tar.gz");
        std::fs::write(&path, test_support::archive::gzip(&t.finish())).map_err(err("write"))?;

        sign_in(&c, w, "uploader").await?;
        goto(&c, w, "/upload").await?;
        wait_css(&c, "#upload-file")
            .await?
            .send_keys(&path.display().to_string())
            .await
            .map_err(err("pick file"))?;
        wait_css(&c, "#upload-submit")
            .await?
            .click()
            .await
            .map_err(err("upload"))?;
        wait_url(&c, "/uploader/webapp-1.0.flist.md").await?;
        let name = text_of(&c, "#flist-name").await?;
        ensure(
            name == "webapp-1.0.flist",
            format!("page of the new flist: {name}"),
        )?;
        let tree = text_of(&c, "#contents").await?;
        ensure(
            tree.contains("etc/") && tree.contains("usr/"),
            format!("its contents: {tree}"),
        )?;
        let url = c
            .execute("return document.getElementById('flist-url').value", vec![])
            .await
            .map_err(err("url"))?;
        ensure(
            url == json!("http://hub.test/uploader/webapp-1.0.flist"),
            format!("copyable URL: {url}"),
        )
    });
}

#[test]
fn open_and_close_a_directory_in_the_tree() {
    browser_test("tree", |c, w| async move {
        let mut tree = Tree::new(meta(0o755));
        let bin = tree.mkdir_p("usr/bin", &meta(0o755)).unwrap();
        tree.insert(bin, "passwd", meta(0o4755), file(68_208))
            .unwrap();
        tree.insert(
            bin,
            "sh",
            meta(0o777),
            Kind::Symlink {
                target: "dash".into(),
            },
        )
        .unwrap();
        put_tree(w, "treeuser", "tree.flist", tree, Metadata::new()).await;

        goto(&c, w, "/treeuser/tree.flist.md").await?;
        wait_css(&c, "#contents a.dir")
            .await?
            .click()
            .await
            .map_err(err("open usr"))?;
        let bin_link = wait_css(&c, "#contents tr.sub a.dir").await?;
        ensure(
            bin_link.text().await.map_err(err("text"))? == "bin/",
            "usr opened in place and shows bin/",
        )?;
        bin_link.click().await.map_err(err("open bin"))?;
        let row = text_of(&c, "#contents tr.sub tr.sub tr.t-regular").await?;
        ensure(
            row.contains("-rwsr-xr-x") && row.contains("passwd") && row.contains("66.6 KB"),
            format!("setuid file row: {row}"),
        )?;
        let link = text_of(&c, "#contents tr.sub tr.sub tr.t-symlink").await?;
        ensure(
            link.contains("sh") && link.contains("→ dash"),
            format!("symlink row: {link}"),
        )?;
        // Closing usr removes what it showed.
        wait_css(
            &c,
            "#contents > .table-wrap > table > tbody > tr > td > a.dir",
        )
        .await?
        .click()
        .await
        .map_err(err("close usr"))?;
        let open = c
            .execute(
                "return document.querySelectorAll('#contents tr.sub').length",
                vec![],
            )
            .await
            .map_err(err("count"))?;
        ensure(open == json!(0), format!("closed: {open} sub-rows left"))
    });
}

#[test]
fn find_a_file_path_with_search() {
    browser_test("search", |c, w| async move {
        let mut tree = Tree::new(meta(0o755));
        let d = tree.mkdir_p("opt/searchable", &meta(0o755)).unwrap();
        tree.insert(d, "unique-file-xyz.conf", meta(0o644), file(10))
            .unwrap();
        put_tree(w, "finder", "haystack.flist", tree, Metadata::new()).await;

        goto(&c, w, "/").await?;
        let input = wait_css(&c, "#home-search").await?;
        input
            .send_keys("/opt/searchable/uni\u{E007}")
            .await
            .map_err(err("type query"))?;
        let hit = text_of(&c, "#path-results li").await?;
        ensure(
            hit.contains("/opt/searchable/unique-file-xyz.conf")
                && hit.contains("finder/haystack.flist"),
            format!("path hit: {hit}"),
        )?;
        let mark = text_of(&c, "#path-results mark").await?;
        ensure(mark == "/opt/searchable/uni", format!("highlight: {mark}"))?;
        wait_css(&c, "#path-results li a")
            .await?
            .click()
            .await
            .map_err(err("open hit"))?;
        let tree = text_of(&c, "#contents").await?;
        ensure(
            tree.contains("unique-file-xyz.conf"),
            format!("the hit opens its directory: {tree}"),
        )?;
        // And a query that matches nothing says so.
        goto(&c, w, "/search?q=/no/such/path-anywhere").await?;
        let none = text_of(&c, "#no-results").await?;
        ensure(none.contains("No results"), format!("no results: {none}"))
    });
}

#[test]
fn rename_and_delete_from_the_repository_page() {
    browser_test("rename_delete", |c, w| async move {
        let mut tree = Tree::new(meta(0o755));
        tree.insert(Tree::ROOT, "f", meta(0o644), file(1)).unwrap();
        put_tree(w, "owner1", "old-name.flist", tree, Metadata::new()).await;

        sign_in(&c, w, "owner1").await?;
        goto(&c, w, "/owner1").await?;
        let row = "tr[data-name='old-name.flist']";
        wait_css(&c, &format!("{row} details.manage summary"))
            .await?
            .click()
            .await
            .map_err(err("open manage"))?;
        let to = wait_css(&c, &format!("{row} .rename-form input[name=to]")).await?;
        to.clear().await.map_err(err("clear"))?;
        to.send_keys("new-name.flist").await.map_err(err("type"))?;
        wait_css(&c, &format!("{row} .rename-form button"))
            .await?
            .click()
            .await
            .map_err(err("rename"))?;
        wait_text(&c, "#flash", "Renamed old-name.flist to new-name.flist.").await?;
        wait_css(&c, "tr[data-name='new-name.flist']").await?;
        ensure(
            c.find(Locator::Css(row)).await.is_err(),
            "the old name is gone",
        )?;

        let row = "tr[data-name='new-name.flist']";
        wait_css(&c, &format!("{row} details.manage summary"))
            .await?
            .click()
            .await
            .map_err(err("open manage"))?;
        wait_css(&c, &format!("{row} .delete-form input[name=confirm]"))
            .await?
            .click()
            .await
            .map_err(err("confirm"))?;
        wait_css(&c, &format!("{row} .delete-form button"))
            .await?
            .click()
            .await
            .map_err(err("delete"))?;
        wait_text(&c, "#flash", "Deleted new-name.flist.").await?;
        ensure(c.find(Locator::Css(row)).await.is_err(), "the row is gone")?;
        let gone = w
            .hub
            .hub()
            .catalog()
            .entry("owner1", "new-name.flist")
            .unwrap();
        ensure(gone.is_none(), "deleted in the catalog")
    });
}

#[test]
fn create_and_revoke_a_token() {
    browser_test("tokens", |c, w| async move {
        sign_in(&c, w, "tokenuser").await?;
        goto(&c, w, "/token").await?;
        wait_css(&c, "#token-name")
            .await?
            .send_keys("ci-publish")
            .await
            .map_err(err("name"))?;
        wait_css(&c, "#token-days option[value='7']")
            .await?
            .click()
            .await
            .map_err(err("expiry"))?;
        wait_css(&c, "#token-create")
            .await?
            .click()
            .await
            .map_err(err("create"))?;
        // The page that shows the new token (a form POST answered with a page).
        wait_css(&c, "#token-value").await?;
        let token = c
            .execute(
                "return document.getElementById('token-value').value",
                vec![],
            )
            .await
            .map_err(err("token"))?;
        let token = token.as_str().unwrap_or_default().to_string();
        let hub = w.hub.hub();
        let info = match hub.accounts().check_token(&token).unwrap() {
            TokenCheck::Valid(i) => i,
            other => return Err(format!("the shown token works: {other:?}")),
        };
        ensure(info.label.as_deref() == Some("ci-publish"), "named")?;
        let days = (info.expires - info.created) / 86_400;
        ensure(days == 7, format!("expires in 7 days: {days}"))?;
        let row = text_of(&c, "#token-list tr[data-token='ci-publish']").await?;
        ensure(row.contains("never"), format!("never used yet: {row}"))?;
        // Reloading the page creates nothing.
        goto(&c, w, "/token").await?;
        let n = hub.accounts().list_tokens("tokenuser").unwrap().len();
        goto(&c, w, "/token").await?;
        ensure(
            hub.accounts().list_tokens("tokenuser").unwrap().len() == n,
            "GET /token creates no token",
        )?;
        wait_css(&c, "#token-list tr[data-token='ci-publish'] button")
            .await?
            .click()
            .await
            .map_err(err("revoke"))?;
        wait_text(&c, "#flash", "Revoked token “ci-publish”.").await?;
        ensure(
            c.find(Locator::Css("#token-list tr[data-token='ci-publish']"))
                .await
                .is_err(),
            "no longer listed",
        )?;
        ensure(
            hub.accounts().check_token(&token).unwrap() == TokenCheck::Revoked,
            "revoked in the catalog",
        )
    });
}

#[test]
fn merge_two_flists_from_the_form() {
    browser_test("merge", |c, w| async move {
        let mut one = Tree::new(meta(0o755));
        one.insert(Tree::ROOT, "shared", meta(0o644), file(111))
            .unwrap();
        one.insert(Tree::ROOT, "only-one", meta(0o644), file(1))
            .unwrap();
        put_tree(w, "merger", "one.flist", one, Metadata::new()).await;
        let mut two = Tree::new(meta(0o755));
        two.insert(Tree::ROOT, "shared", meta(0o644), file(222))
            .unwrap();
        two.insert(Tree::ROOT, "only-two", meta(0o644), file(2))
            .unwrap();
        put_tree(w, "merger", "two.flist", two, Metadata::new()).await;

        sign_in(&c, w, "merger").await?;
        goto(&c, w, "/merge").await?;
        for f in ["merger/one.flist", "merger/two.flist"] {
            wait_css(&c, &format!("input[name=pick][value='{f}']"))
                .await?
                .click()
                .await
                .map_err(err("pick"))?;
        }
        // two first (one moves to 3): it wins on `shared`.
        let order_one = wait_css(&c, "input[name='order:merger/one.flist']").await?;
        order_one.clear().await.map_err(err("clear"))?;
        order_one.send_keys("3").await.map_err(err("order"))?;
        wait_css(&c, "#merge-target")
            .await?
            .send_keys("both")
            .await
            .map_err(err("target"))?;
        wait_css(&c, "#merge-submit")
            .await?
            .click()
            .await
            .map_err(err("merge"))?;
        wait_url(&c, "/merger/both.flist.md").await?;
        let tree = text_of(&c, "#contents").await?;
        ensure(
            tree.contains("only-one") && tree.contains("only-two"),
            format!("both flists' files: {tree}"),
        )?;
        let shared = c
            .execute(
                "return Array.from(document.querySelectorAll('#contents tr')).map(r => r.innerText).find(t => t.includes('shared'))",
                vec![],
            )
            .await
            .map_err(err("shared row"))?;
        let shared = shared.as_str().unwrap_or_default().to_string();
        ensure(
            shared.contains("222 B"),
            format!("the first in order wins: {shared}"),
        )
    });
}

#[test]
fn script_and_quotes_in_names_readme_and_metadata_render_as_text() {
    browser_test("hostile_text", |c, w| async move {
        let evil = r#"<script>window.__pwned=1</script>"q"'s'"#;
        // Entry names hold no `/`: an element with a handler instead of a script.
        let evil_name = r#"<img src=x onerror="window.__pwned=3">"q"'s'"#;
        let mut tree = Tree::new(meta(0o755));
        tree.insert(Tree::ROOT, evil_name, meta(0o644), file(5))
            .unwrap();
        let mut md = Metadata::new();
        md.set(
            "readme",
            json!({"readme": format!("# Hello \"quoted\" 'single'\n\n{evil}\n\n<img src=x onerror=\"window.__pwned=2\">")})
                .to_string(),
        );
        md.set("maintainer", evil.to_string());
        put_tree(w, "evil", "evil.flist", tree, md).await;

        goto(&c, w, "/evil/evil.flist.md").await?;
        let tree_text = text_of(&c, "#contents").await?;
        ensure(
            tree_text.contains(evil_name),
            format!("entry name as text: {tree_text}"),
        )?;
        let meta_text = text_of(&c, "#metadata").await?;
        ensure(
            meta_text.contains("maintainer") && meta_text.contains(evil),
            format!("metadata as text: {meta_text}"),
        )?;
        let readme = text_of(&c, "#readme").await?;
        ensure(
            readme.contains("Hello \"quoted\" 'single'"),
            format!("readme rendered with its quotes: {readme}"),
        )?;
        let state = c
            .execute(
                "return [typeof window.__pwned, document.scripts.length, \
                 document.querySelectorAll('.markdown script, img[onerror]').length]",
                vec![],
            )
            .await
            .map_err(err("inspect"))?;
        ensure(
            state == json!(["undefined", 1, 0]),
            format!("no injected script ran or exists: {state}"),
        )
    });
}

/// Types `text` into the field `css`.
async fn type_in(c: &Client, css: &str, text: &str) -> Res {
    wait_css(c, css)
        .await?
        .send_keys(text)
        .await
        .map_err(err(&format!("type into {css}")))
}

async fn click(c: &Client, css: &str) -> Res {
    wait_css(c, css)
        .await?
        .click()
        .await
        .map_err(err(&format!("click {css}")))
}

/// Signs `user` in with a password through the sign-in page.
async fn sign_in_password(c: &Client, w: &World, user: &str, password: &str) -> Res {
    goto(c, w, "/login-method").await?;
    type_in(c, "#password-login input[name=username]", user).await?;
    type_in(c, "#password-login input[name=password]", password).await?;
    click(c, "#password-login button").await
}

#[test]
fn change_the_password_on_the_account_page() {
    browser_test("password_change", |c, w| async move {
        let hub = w.hub.hub();
        tokio::task::spawn_blocking(move || {
            hub.accounts()
                .user_add("dora", "dora's first password", false)
        })
        .await
        .map_err(err("join"))?
        .map_err(err("user add"))?;
        sign_in_password(&c, w, "dora", "dora's first password").await?;
        wait_css(&c, "#signout").await?;
        click(&c, "#account-link").await?;
        wait_url(&c, "/account").await?;
        ensure(
            text_of(&c, "#account-user").await? == "dora",
            "the account page names the user",
        )?;
        // a wrong current password is refused, nothing changes
        type_in(&c, "#pw-current", "not the password").await?;
        type_in(&c, "#pw-new", "dora's second password").await?;
        type_in(&c, "#pw-confirm", "dora's second password").await?;
        click(&c, "#pw-change").await?;
        wait_url(&c, "/account").await?;
        let flash = text_of(&c, "#flash").await?;
        ensure(
            flash.contains("current password is wrong"),
            format!("refusal: {flash:?}"),
        )?;
        // the right one: every session ends, the sign-in page says so
        type_in(&c, "#pw-current", "dora's first password").await?;
        type_in(&c, "#pw-new", "dora's second password").await?;
        type_in(&c, "#pw-confirm", "dora's second password").await?;
        click(&c, "#pw-change").await?;
        wait_url(&c, "/login-method").await?;
        let flash = text_of(&c, "#flash").await?;
        ensure(flash.contains("Password changed"), format!("{flash:?}"))?;
        ensure(
            c.find(Locator::Css("#signout")).await.is_err(),
            "signed out after the change",
        )?;
        sign_in_password(&c, w, "dora", "dora's first password").await?;
        let refusal = text_of(&c, "#login-error").await?;
        ensure(
            refusal.contains("Wrong user name or password"),
            format!("the old password is refused: {refusal:?}"),
        )?;
        sign_in_password(&c, w, "dora", "dora's second password").await?;
        wait_css(&c, "#signout").await?;
        Ok(())
    });
}

#[test]
fn an_admin_disables_an_account_resets_a_password_and_invites() {
    browser_test("admin_accounts", |c, w| async move {
        let hub = w.hub.hub();
        let victim_token = w.hub.token("eve", &[]).await;
        tokio::task::spawn_blocking(move || {
            hub.accounts()
                .user_add("root-admin", "the admin's password", true)
        })
        .await
        .map_err(err("join"))?
        .map_err(err("user add"))?;
        // not an admin: refused
        sign_in(&c, w, "mallory").await?;
        goto(&c, w, "/admin").await?;
        let msg = text_of(&c, "main").await?;
        ensure(msg.contains("for the admins"), format!("{msg:?}"))?;
        click(&c, "#signout").await?;

        sign_in_password(&c, w, "root-admin", "the admin's password").await?;
        wait_css(&c, "#signout").await?;
        goto(&c, w, "/account").await?;
        click(&c, "#admin-link").await?;
        wait_url(&c, "/admin").await?;
        let row = text_of(&c, "tr[data-user=eve] .status").await?;
        ensure(row == "active", format!("eve is active: {row:?}"))?;
        click(&c, "tr[data-user=eve] button.danger").await?;
        let flash = text_of(&c, "#flash").await?;
        ensure(
            flash.contains("Disabled eve") && flash.contains("1 token was revoked"),
            format!("{flash:?}"),
        )?;
        wait_text(&c, "tr[data-user=eve] .status", "disabled").await?;
        let hub = w.hub.hub();
        let check = tokio::task::spawn_blocking(move || hub.accounts().check_token(&victim_token))
            .await
            .map_err(err("join"))?
            .map_err(err("check"))?;
        ensure(
            check == TokenCheck::Revoked,
            format!("eve's token: {check:?}"),
        )?;
        // a new password for eve, then enabled again: eve signs in with it
        type_in(
            &c,
            "tr[data-user=eve] input[name=password]",
            "eve's new password",
        )
        .await?;
        click(&c, "tr[data-user=eve] form.reset button").await?;
        let flash = text_of(&c, "#flash").await?;
        ensure(
            flash.contains("New password set for eve"),
            format!("{flash:?}"),
        )?;
        click(&c, "tr[data-user=eve] form.inline button").await?;
        wait_text(&c, "tr[data-user=eve] .status", "active").await?;
        // an invitation link, shown once
        click(&c, "#invite-create").await?;
        let url = c
            .execute("return document.getElementById('invite-url').value", vec![])
            .await
            .map_err(err("invite url"))?;
        let url = url.as_str().unwrap_or_default().to_string();
        let code = url
            .split_once("invite=")
            .map(|(_, c)| c.to_string())
            .ok_or(format!("invitation URL: {url:?}"))?;
        click(&c, "#signout").await?;
        sign_in_password(&c, w, "eve", "eve's new password").await?;
        wait_css(&c, "#signout").await?;
        click(&c, "#signout").await?;
        // The sign-out page first: a navigation started now would race the form's.
        wait_text(&c, "h1", "Signed out").await?;
        // sign-up is closed without the invitation, open with it, once
        goto(&c, w, "/signup").await?;
        wait_css(&c, "#signup-refused").await?;
        goto(&c, w, &format!("/signup?invite={code}")).await?;
        type_in(&c, "#signup-name", "frank").await?;
        type_in(&c, "#signup-password", "frank's password").await?;
        type_in(&c, "#signup-confirm", "frank's password").await?;
        click(&c, "#signup-create").await?;
        wait_url(&c, "/account").await?;
        wait_text(&c, "#account-user", "frank").await?;
        click(&c, "#signout").await?;
        wait_text(&c, "h1", "Signed out").await?;
        goto(&c, w, &format!("/signup?invite={code}")).await?;
        let refused = text_of(&c, "#signup-refused").await?;
        ensure(refused.contains("used, expired"), format!("{refused:?}"))
    });
}

/// A small valid PNG (1×1, red).
const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x08, 0xd7, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0x18, 0xdd, 0x8d, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

#[test]
fn preview_a_file_and_download_it_alone() {
    browser_test("file_preview", |c, w| async move {
        let motd = "Welcome <script>document.title='owned'</script> & bye\n";
        let long: String = (0..4000)
            .map(|i| format!("line {i:05} of a long log\n"))
            .collect();
        let mut elf = b"\x7fELF\x02\x01\x01\x00".to_vec();
        elf.extend((0..5000u32).map(|i| (i * 7 % 251) as u8));
        let mut t = test_support::archive::RawTar::new();
        t.dir("etc/")
            .file("etc/motd", motd.as_bytes())
            .symlink("etc/welcome", "motd")
            .dir("var/")
            .file("var/long.log", long.as_bytes())
            .file("var/logo.png", PNG_1X1)
            .dir("bin/")
            .file("bin/tool", &elf);
        let token = w.hub.token("viewer", &[]).await;
        let (s, v) = w
            .hub
            .upload(
                "/api/flist/me/upload",
                &token,
                "files.tar.gz",
                test_support::archive::gzip(&t.finish()),
            )
            .await;
        ensure(s == 200, format!("upload: {s} {v}"))?;
        // the tree's file row opens the preview
        goto(&c, w, "/viewer/files.flist.md?dir=/etc#contents").await?;
        click(&c, "#contents a.file").await?;
        wait_url(&c, "#preview").await?;
        let text = text_of(&c, "#preview-text").await?;
        ensure(text == motd.trim_end(), format!("shown as text: {text:?}"))?;
        let title = c.title().await.map_err(err("title"))?;
        ensure(!title.contains("owned"), "the file's markup is not run")?;
        ensure(
            c.find(Locator::Css("#preview-notice")).await.is_err(),
            "no size notice for a small file",
        )?;
        // its download link fetches exactly that file
        let href = wait_css(&c, "#preview-download")
            .await?
            .attr("href")
            .await
            .map_err(err("href"))?
            .unwrap_or_default();
        ensure(
            href == "/viewer/files.flist/files/etc/motd",
            format!("download link: {href}"),
        )?;
        let got = c
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch(arguments[0]).then(async r => done([r.status,
                   r.headers.get('content-disposition'), r.headers.get('content-length'),
                   await r.text()])).catch(e => done(String(e)));",
                vec![json!(href)],
            )
            .await
            .map_err(err("fetch"))?;
        ensure(
            got == json!([
                200,
                "attachment; filename=\"motd\"; filename*=UTF-8''motd",
                motd.len().to_string(),
                motd
            ]),
            format!("downloaded: {got}"),
        )?;
        // a symlink's preview leads to its target
        goto(&c, w, "/viewer/files.flist.md?file=/etc/welcome#preview").await?;
        click(&c, "#preview-link a").await?;
        wait_url(&c, "?file=/etc/motd#preview").await?;
        wait_css(&c, "#preview-text").await?;
        // a long text: the first 64 KiB and a notice
        goto(&c, w, "/viewer/files.flist.md?file=/var/long.log#preview").await?;
        let notice = text_of(&c, "#preview-notice").await?;
        ensure(
            notice.contains("first 64.0 KB of 97.7 KB"),
            format!("notice: {notice:?}"),
        )?;
        let shown = c
            .execute(
                "return document.getElementById('preview-text').textContent.length",
                vec![],
            )
            .await
            .map_err(err("length"))?;
        ensure(shown == json!(65536), format!("shown: {shown}"))?;
        // an image is shown (loaded through the file route)
        goto(&c, w, "/viewer/files.flist.md?file=/var/logo.png#preview").await?;
        wait_css(&c, "#preview-image").await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let width = c
                .execute(
                    "const i = document.getElementById('preview-image'); \
                     return i.complete ? i.naturalWidth : -1",
                    vec![],
                )
                .await
                .map_err(err("image"))?;
            if width == json!(1) {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("the image did not load: {width}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // a binary is described, not shown
        goto(&c, w, "/viewer/files.flist.md?file=/bin/tool#preview").await?;
        let desc = text_of(&c, "#preview-binary").await?;
        ensure(desc.contains("ELF"), format!("{desc:?}"))?;
        ensure(
            c.find(Locator::Css("#preview-text")).await.is_err(),
            "no text for a binary",
        )?;
        // a missing path says so on the page
        goto(&c, w, "/viewer/files.flist.md?file=/etc/none#preview").await?;
        let e = text_of(&c, "#preview-error").await?;
        ensure(e.contains("There is no /etc/none"), format!("{e:?}"))?;
        // screenshots to look at
        goto(&c, w, "/viewer/files.flist.md?file=/etc/motd#preview").await?;
        wait_css(&c, "#preview-text").await?;
        let dir = screenshot_dir();
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(png) = c.screenshot().await {
            let _ = std::fs::write(dir.join("flist-file-preview.png"), png);
        }
        Ok(())
    });
}

// ----- every page: fits 1280 px and 390 px, every text colour readable ---------------------

/// Every page of the web app, as (path, signed in as). `every_page_fits_and_is_readable`
/// loads each at 1280 and 390 px and checks that nothing scrolls sideways and that every text
/// and button colour pair reaches WCAG AA. A new page joins by a line here (its data made in
/// [`page_fixtures`], or in the test of its own feature before this one runs).
const PAGES: &[(&str, Option<&str>)] = &[
    ("/", None),
    ("/", Some(PAGE_OWNER)),
    ("/search?q=very-long", None),
    ("/search?q=/etc/a-rather", None),
    ("/login-method", None),
    ("/api/docs", None),
    ("/pageowner", None),
    ("/pageowner", Some(PAGE_OWNER)),
    (
        "/pageowner/an-application-with-a-really-long-release-name-2026.12.07-rc1.flist.md",
        None,
    ),
    (
        "/pageowner/an-application-with-a-really-long-release-name-2026.12.07-rc1.flist.md",
        Some(PAGE_OWNER),
    ),
    ("/pageowner/tags/release-with-a-long-tag-name-2026", None),
    (
        "/pageowner/tags/release-with-a-long-tag-name-2026",
        Some(PAGE_OWNER),
    ),
    ("/pageowner/no-such-flist.flist.md", None),
    ("/pageowner/no-such-flist.flist.md", Some(PAGE_OWNER)),
    ("/upload", Some(PAGE_OWNER)),
    ("/upload-flist", Some(PAGE_OWNER)),
    ("/docker-convert", Some(PAGE_OWNER)),
    ("/merge", Some(PAGE_OWNER)),
    ("/token", Some(PAGE_OWNER)),
    ("/docker-convert/{failed-job}", Some(PAGE_OWNER)),
    ("/account", Some(PAGE_OWNER)),
    ("/admin", Some(PAGE_OWNER)),
    ("/signup", None),
    ("/pageorganisation-with-a-long-name", None),
    ("/pageorganisation-with-a-long-name", Some(PAGE_OWNER)),
    (
        "/pageowner/an-application-with-a-really-long-release-name-2026.12.07-rc1.flist.md?file=/etc/a-rather-deep/directory-with-a-long-name/and-more-of-it-here/a-configuration-file-whose-name-goes-on-and-on-and-on-and-on-and-on.conf",
        None,
    ),
];

/// The account owning the pages' data.
const PAGE_OWNER: &str = "pageowner";

/// The organisation [`PAGE_OWNER`] owns.
const PAGE_ORG: &str = "pageorganisation-with-a-long-name";

/// Long names everywhere (they must wrap), a symlink, a crosslink, a tag and a taglink, a
/// readme with a wide table and code; returns the placeholders of [`PAGES`] filled in.
async fn page_fixtures(w: &World) -> Vec<(String, String)> {
    // the pages' owner is an admin: `/admin` lists every account of the test hub
    let hub = w.hub.hub();
    tokio::task::spawn_blocking(move || {
        let _ = hub
            .accounts()
            .user_add(PAGE_OWNER, "the page owner's password", true);
    })
    .await
    .unwrap();
    let long = "an-application-with-a-really-long-release-name-2026.12.07-rc1.flist";
    let mut tree = Tree::new(meta(0o755));
    let d = tree
        .mkdir_p(
            "etc/a-rather-deep/directory-with-a-long-name/and-more-of-it-here",
            &meta(0o755),
        )
        .unwrap();
    tree.insert(
        d,
        "a-configuration-file-whose-name-goes-on-and-on-and-on-and-on-and-on.conf",
        meta(0o644),
        file(123_456_789),
    )
    .unwrap();
    tree.insert(Tree::ROOT, "very-long-file-name-without-any-break-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz", meta(0o755), file(1))
        .unwrap();
    let mut md = Metadata::new();
    md.set(
        "readme",
        json!({"readme": "# A readme\n\n| column one | column two | column three | column four |\n|---|---|---|---|\n| a-long-cell-value-0123456789 | b-long-cell-value-0123456789 | c-long-cell-value-0123456789 | d |\n\n```\nzflist extract --store zdb://hub.example.org:9900/namespace https://hub.example.org/pageowner/an-application.flist /tmp/somewhere/far/away\n```\n"}).to_string(),
    );
    md.set(
        "maintainer",
        "A Maintainer With A Long Name <a.maintainer.with.a.long.address@example.org>",
    );
    put_tree(w, PAGE_OWNER, long, tree, md).await;
    let mut small = Tree::new(meta(0o755));
    small.insert(Tree::ROOT, "f", meta(0o644), file(1)).unwrap();
    put_tree(w, "pageother", "b.flist", small.clone(), Metadata::new()).await;
    // An organisation the page owner owns, with a member with a long name.
    let hub = w.hub.hub();
    tokio::task::spawn_blocking(move || {
        let a = hub.accounts();
        a.user_add(
            "a-member-with-a-rather-long-account-name",
            "the member's password",
            false,
        )
        .unwrap();
        a.org_create(PAGE_ORG, PAGE_OWNER).unwrap();
        a.org_add(
            PAGE_ORG,
            "a-member-with-a-rather-long-account-name",
            hub_repo::OrgRole::Member,
        )
        .unwrap();
    })
    .await
    .unwrap();
    put_tree(
        w,
        PAGE_ORG,
        "the-organisation-application-2026.12.07.flist",
        small,
        Metadata::new(),
    )
    .await;
    // A docker conversion that failed with a long message.
    let job = w
        .hub
        .server
        .state
        .jobs
        .start("docker", PAGE_OWNER)
        .await
        .unwrap();
    job.fail("pulling registry.example.org/a-very-long-organisation/an-image-with-a-long-name:2026.12.07-rc1: manifest unknown: the registry answered 404 for this tag");
    let hub = w.hub.hub();
    tokio::task::spawn_blocking(move || {
        let a = Actor::new(PAGE_OWNER.to_string(), vec![]);
        let c = hub.catalog();
        c.link(
            &a,
            PAGE_OWNER,
            long,
            "latest-of-the-application-with-a-long-link-name.flist",
        )
        .unwrap();
        c.crosslink(
            &a,
            PAGE_OWNER,
            "crosslink-to-another-repository.flist",
            "pageother",
            "b.flist",
        )
        .unwrap();
        c.tag_add(
            &a,
            PAGE_OWNER,
            "release-with-a-long-tag-name-2026",
            long,
            PAGE_OWNER,
            long,
        )
        .unwrap();
        c.crosstag(
            &a,
            PAGE_OWNER,
            "stable-channel-taglink",
            PAGE_OWNER,
            "release-with-a-long-tag-name-2026",
        )
        .unwrap();
    })
    .await
    .unwrap();
    vec![("{failed-job}".into(), job.id.clone())]
}

/// In the page: what scrolls sideways (the document, or a box inside it other than a form
/// field or a code block) and every text colour pair under 4.5:1, as a list of messages.
const PAGE_CHECK_JS: &str = r#"
const out = [];
const vw = window.innerWidth;
const doc = document.documentElement;
const name = e => e.tagName.toLowerCase() + (e.getAttribute('id') ? '#' + e.getAttribute('id') : '') +
  (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\s+/).join('.') : '');
const where = e => { const p = []; for (let x = e; x && x !== document.body && p.length < 4; x = x.parentElement) p.unshift(name(x)); return p.join(' > '); };
if (doc.scrollWidth > vw) {
  const wide = [];
  for (const e of document.body.querySelectorAll('*')) {
    const r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + 0.5 && ![...e.children].some(c => c.getBoundingClientRect().right > vw + 0.5)) wide.push(where(e) + ' (right ' + Math.round(r.right) + ')');
  }
  out.push('scrolls sideways: scrollWidth ' + doc.scrollWidth + ' > innerWidth ' + vw + '; sticking out: ' + wide.slice(0, 5).join('; '));
}
for (const e of document.body.querySelectorAll('*')) {
  const cs = getComputedStyle(e);
  if (['INPUT', 'TEXTAREA', 'SELECT', 'PRE'].includes(e.tagName) || e.closest('pre') || e.clientWidth <= 1) continue;
  if ((cs.overflowX === 'auto' || cs.overflowX === 'scroll' || cs.overflowX === 'hidden') && e.scrollWidth > e.clientWidth + 1)
    out.push('box scrolls or cuts sideways: ' + where(e) + ' (' + e.scrollWidth + ' > ' + e.clientWidth + ')');
}
const parse = s => { const m = /rgba?\(([^)]*)\)/.exec(s); if (!m) return null; const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
const over = (t, b) => [0, 1, 2].map(i => t[i] * t[3] + b[i] * (1 - t[3])).concat([1]);
const background = e => {
  const layers = [];
  for (let x = e; x; x = x.parentElement) {
    const c = parse(getComputedStyle(x).backgroundColor);
    if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  let bg = [255, 255, 255, 1];
  for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
  return bg;
};
const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
const hex = c => '#' + c.slice(0, 3).map(v => Math.round(v).toString(16).padStart(2, '0')).join('');
const check = (e, colour, what) => {
  const bg = background(e);
  const fg = over(parse(colour) || [0, 0, 0, 1], bg);
  const r = ratio(fg, bg);
  if (r < 4.5) out.push('contrast ' + r.toFixed(2) + ':1 (' + hex(fg) + ' on ' + hex(bg) + ') ' + what + ' ' + where(e) + ' ' + JSON.stringify((e.innerText || e.value || e.placeholder || '').trim().slice(0, 40)));
};
let checked = 0;
for (const e of document.body.querySelectorAll('*')) {
  const cs = getComputedStyle(e);
  const r = e.getBoundingClientRect();
  if (r.width <= 1 || r.height <= 1 || cs.visibility === 'hidden' || e.disabled) continue;
  const control = ['BUTTON', 'INPUT', 'SELECT', 'TEXTAREA'].includes(e.tagName) && e.type !== 'hidden' && e.type !== 'checkbox' && e.type !== 'radio';
  const text = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (control || text) { check(e, cs.color, 'text'); checked++; }
  if (e.placeholder) check(e, getComputedStyle(e, '::placeholder').color, 'placeholder');
}
if (checked === 0) out.push('no text checked');
return out;
"#;

#[test]
fn every_page_fits_and_is_readable() {
    browser_test("every_page", |c, w| async move {
        let fill = page_fixtures(w).await;
        let shots = screenshot_dir().join("pages");
        let _ = std::fs::create_dir_all(&shots);
        let mut problems = Vec::new();
        let mut signed_in: Option<&str> = None;
        let mut order: Vec<Option<&str>> = vec![None];
        for (_, who) in PAGES {
            if !order.contains(who) {
                order.push(*who);
            }
        }
        let mut checked = 0;
        for who in order {
            if who != signed_in {
                if let Some(u) = who {
                    sign_in(&c, w, u).await?;
                }
                signed_in = who;
            }
            for (template, _) in PAGES.iter().filter(|(_, p)| *p == who) {
                let mut path = template.to_string();
                for (k, v) in &fill {
                    path = path.replace(k.as_str(), v);
                }
                for (width, height) in [(1280u32, 900u32), (390, 844)] {
                    c.set_window_size(width, height)
                        .await
                        .map_err(err("window size"))?;
                    goto(&c, w, &path).await?;
                    // Owner forms folded in `<details>` count too.
                    c.execute(
                        "document.querySelectorAll('details').forEach(d => d.open = true)",
                        vec![],
                    )
                    .await
                    .map_err(err("open details"))?;
                    let inner = c
                        .execute("return window.innerWidth", vec![])
                        .await
                        .map_err(err("innerWidth"))?;
                    ensure(
                        inner
                            .as_u64()
                            .is_some_and(|v| v.abs_diff(u64::from(width)) < 20),
                        format!("window of {width} px: innerWidth {inner}"),
                    )?;
                    let found = c
                        .execute(PAGE_CHECK_JS, vec![])
                        .await
                        .map_err(err(&format!("checking {path}")))?;
                    let who = who.unwrap_or("signed out");
                    for p in found.as_array().into_iter().flatten() {
                        problems.push(format!(
                            "{path} at {width} px ({who}): {}",
                            p.as_str().unwrap_or_default()
                        ));
                    }
                    // a file preview is shot where it is, under its own name
                    let preview = if template.contains("?file=") {
                        c.execute(
                            "document.getElementById('preview')?.scrollIntoView()",
                            vec![],
                        )
                        .await
                        .map_err(err("scroll to the preview"))?;
                        "preview-"
                    } else {
                        ""
                    };
                    let slug: String = format!("{preview}{who}{template}")
                        .chars()
                        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
                        .take(80)
                        .collect();
                    if let Ok(png) = c.screenshot().await {
                        let _ = std::fs::write(shots.join(format!("{slug}-{width}.png")), png);
                    }
                    checked += 1;
                }
            }
        }
        ensure(
            checked == 2 * PAGES.len(),
            format!("{checked} page views checked"),
        )?;
        ensure(
            problems.is_empty(),
            format!("{} problems:\n{}", problems.len(), problems.join("\n")),
        )
    });
}

#[test]
fn error_pages_keep_the_session_and_the_small_things_read_right() {
    browser_test("small_things", |c, w| async move {
        let mut tree = Tree::new(meta(0o755));
        let bin = tree.mkdir_p("usr/bin", &meta(0o755)).unwrap();
        tree.insert(bin, "tool", meta(0o755), file(3)).unwrap();
        put_tree(w, "smallthings", "one.flist", tree, Metadata::new()).await;
        let hub = w.hub.hub();
        tokio::task::spawn_blocking(move || {
            let a = Actor::new("smallthings".to_string(), vec![]);
            hub.catalog().tag_add(
                &a,
                "smallthings",
                "v1",
                "one.flist",
                "smallthings",
                "one.flist",
            )
        })
        .await
        .map_err(err("join"))?
        .map_err(err("tag"))?;

        sign_in(&c, w, "smallthings").await?;
        // A page that does not exist, under a repository and outside any: still signed in.
        for path in [
            "/smallthings/no-such.flist.md",
            "/smallthings/tags/v1/nothing.flist",
            "/no/such/page/at/all",
        ] {
            goto(&c, w, path).await?;
            wait_css(&c, "#error-message").await?;
            ensure(
                c.find(Locator::Css("#signout")).await.is_ok()
                    && c.find(Locator::Css("#signin")).await.is_err(),
                format!("the error page of {path} shows the session"),
            )?;
        }
        // Signed in, the home page offers no sign-in.
        goto(&c, w, "/").await?;
        let signin_links = c
            .execute(
                "return document.querySelectorAll('main a[href^=\"/login-method\"]').length",
                vec![],
            )
            .await
            .map_err(err("links"))?;
        ensure(
            signin_links == json!(0),
            "no Sign in on the home page once signed in",
        )?;
        // A favicon, so browsers stop asking for a missing one.
        let icon = c
            .execute_async(
                "const done = arguments[0]; \
                 fetch('/favicon.ico').then(r => done([r.status, r.headers.get('content-type'), \
                 !!document.querySelector('link[rel=icon]')]))",
                vec![],
            )
            .await
            .map_err(err("favicon"))?;
        ensure(
            icon == json!([200, "image/svg+xml", true]),
            format!("favicon: {icon}"),
        )?;
        // One of a thing is singular.
        goto(&c, w, "/smallthings").await?;
        let counts = text_of(&c, ".pagehead p").await?;
        ensure(
            counts.starts_with("1 entry, 1 tag"),
            format!("repository counts: {counts:?}"),
        )?;
        goto(&c, w, "/smallthings/one.flist.md").await?;
        let counts = text_of(&c, "#counts").await?;
        ensure(
            counts.starts_with("1 file, 2 directories, 0 symlinks"),
            format!("flist counts: {counts:?}"),
        )?;
        // The directory path reads as a path.
        goto(&c, w, "/smallthings/one.flist.md?dir=/usr/bin#contents").await?;
        let crumbs = text_of(&c, ".tree-crumbs").await?;
        ensure(
            crumbs.starts_with("/usr/bin ·") && crumbs.contains("1 entry"),
            format!("breadcrumbs: {crumbs:?}"),
        )?;
        // The API page shows code as code, not backticks.
        goto(&c, w, "/api/docs").await?;
        let raw = c
            .execute(
                "document.querySelectorAll('details').forEach(d => d.open = true); \
                 return [document.querySelector('main').innerText.includes('`'), \
                 document.querySelectorAll('main p code, main summary code code, main li code').length]",
                vec![],
            )
            .await
            .map_err(err("api page"))?;
        ensure(
            raw[0] == json!(false) && raw[1].as_u64().unwrap_or(0) > 10,
            format!("no raw backticks on /api/docs: {raw}"),
        )
    });
}

#[test]
fn the_upload_form_names_the_flist_and_asks_before_replacing() {
    browser_test("upload_name_replace", |c, w| async move {
        let dir = tempfile::tempdir().map_err(err("tempdir"))?;
        let archive = |motd: &[u8]| {
            let mut t = test_support::archive::RawTar::new();
            t.dir("etc/").file("etc/motd", motd);
            test_support::archive::gzip(&t.finish())
        };
        let path = dir.path().join("site-build-42.tar.gz");
        std::fs::write(&path, archive(b"first\n")).map_err(err("write"))?;
        sign_in(&c, w, "namer").await?;
        let upload = |name: Option<&'static str>| {
            let (c, path) = (c.clone(), path.clone());
            async move {
                goto(&c, w, "/upload").await?;
                wait_css(&c, "#upload-file")
                    .await?
                    .send_keys(&path.display().to_string())
                    .await
                    .map_err(err("pick file"))?;
                let field = wait_css(&c, "#upload-name").await?;
                let shown = field.prop("value").await.map_err(err("name"))?;
                ensure(
                    shown.as_deref() == Some("site-build-42.flist"),
                    format!("the default name is the archive's: {shown:?}"),
                )?;
                if let Some(n) = name {
                    field.clear().await.map_err(err("clear"))?;
                    field.send_keys(n).await.map_err(err("type name"))?;
                }
                wait_css(&c, "#upload-submit")
                    .await?
                    .click()
                    .await
                    .map_err(err("upload"))
            }
        };
        // Named by the user.
        upload(Some("my-site")).await?;
        wait_url(&c, "/namer/my-site.flist.md").await?;
        let md5_first = text_of(&c, "#md5").await?;
        // The same name again: the page asks; declining stores nothing.
        std::fs::write(&path, archive(b"second\n")).map_err(err("write"))?;
        upload(Some("my-site")).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let question = loop {
            if let Ok(t) = c.get_alert_text().await {
                break t;
            }
            if Instant::now() > deadline {
                return Err("no question before replacing my-site.flist".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        ensure(
            question.contains("namer already holds my-site.flist"),
            format!("the question: {question:?}"),
        )?;
        c.dismiss_alert().await.map_err(err("decline"))?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        ensure(
            c.current_url().await.map_err(err("url"))?.path() == "/upload",
            "declined: still on the form",
        )?;
        goto(&c, w, "/namer/my-site.flist.md").await?;
        ensure(
            text_of(&c, "#md5").await? == md5_first,
            "declined: the flist is unchanged",
        )?;
        // Accepting replaces it.
        upload(Some("my-site")).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.get_alert_text().await.is_err() {
            ensure(Instant::now() < deadline, "no question the second time")?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.accept_alert().await.map_err(err("accept"))?;
        wait_url(&c, "/namer/my-site.flist.md").await?;
        let md5_second = text_of(&c, "#md5").await?;
        ensure(md5_second != md5_first, "accepted: replaced")?;
        // The hub itself refuses an unconfirmed replacement from the form (no script).
        let refused = c
            .execute_async(
                "const done = arguments[0]; const d = new FormData(); d.append('name', 'my-site'); \
                 d.append('file', new Blob(['x']), 'x.tar.gz'); \
                 fetch('/upload', {method: 'POST', body: d, headers: {Accept: 'application/json'}}) \
                 .then(r => r.json().then(v => done([r.status, v.message])))",
                vec![],
            )
            .await
            .map_err(err("post"))?;
        ensure(
            refused[0] == json!(409)
                && refused[1]
                    .as_str()
                    .unwrap_or_default()
                    .contains("replace it"),
            format!("unconfirmed replacement refused: {refused}"),
        )
    });
}

/// The answer status of `fetch(path)` from the page (same-origin: with the session cookie).
async fn fetch_status(c: &Client, path: &str) -> Res<u64> {
    let v = c
        .execute_async(
            "const [p, done] = arguments; fetch(p).then(r => done(r.status), () => done(0));",
            vec![json!(path)],
        )
        .await
        .map_err(err(&format!("fetch {path}")))?;
    v.as_u64().ok_or_else(|| format!("fetch {path}: {v}"))
}

/// The page's whole text.
async fn page_text(c: &Client) -> Res<String> {
    text_of(c, "body").await
}

#[test]
fn a_private_repository_is_invisible_to_visitors_and_non_members_and_visible_to_members() {
    browser_test("private_repository", |c, w| async move {
        let mut tree = Tree::new(meta(0o755));
        tree.insert(Tree::ROOT, "hidden-file", meta(0o644), file(5))
            .unwrap();
        put_tree(w, "privorg", "secret-app.flist", tree, Metadata::new()).await;
        // An account each: the organisation's member, someone else.
        w.hub.token("pmember", &[]).await;
        w.hub.token("pstranger", &[]).await;
        let hub = w.hub.hub();
        tokio::task::spawn_blocking(move || {
            hub.accounts().org_create("privorg", "pmember")?;
            hub.catalog()
                .set_visibility(&Actor::system("test"), "privorg", true)
        })
        .await
        .map_err(err("join"))?
        .map_err(err("make private"))?;

        let hidden = |c: Client| async move {
            goto(&c, w, "/privorg").await?;
            wait_text(&c, "#error-message", "There is no repository privorg.").await?;
            for path in ["/privorg/secret-app.flist.md", "/privorg/secret-app.flist"] {
                goto(&c, w, path).await?;
                wait_text(&c, "#error-message", "not found: privorg/secret-app.flist").await?;
            }
            goto(&c, w, "/search?q=secret-app").await?;
            let text = page_text(&c).await?;
            ensure(
                !text.contains("secret-app.flist") && !text.contains("privorg"),
                "search shows the private flist",
            )?;
            goto(&c, w, "/search?q=hidden-file").await?;
            ensure(
                !page_text(&c).await?.contains("privorg"),
                "path search shows the private flist",
            )?;
            goto(&c, w, "/").await?;
            ensure(
                !page_text(&c).await?.contains("privorg"),
                "the home page lists the private repository",
            )?;
            goto(&c, w, "/api/flist/privorg").await?;
            ensure(
                page_text(&c).await?.contains("user not found"),
                "the API lists the private repository",
            )?;
            for path in [
                "/privorg/secret-app.flist",
                "/privorg/secret-app.flist.md5",
                "/privorg/secret-app.json",
                "/api/flist/privorg/secret-app.flist",
            ] {
                let s = fetch_status(&c, path).await?;
                ensure(s == 404, format!("{path} answered {s}"))?;
            }
            Ok::<_, String>(())
        };
        // A visitor, then a signed-in account that is no member.
        hidden(c.clone()).await?;
        sign_in(&c, w, "pstranger").await?;
        hidden(c.clone()).await?;
        goto(&c, w, "/").await?;
        wait_css(&c, "#signout")
            .await?
            .click()
            .await
            .map_err(err("sign out"))?;
        wait_css(&c, "#signin").await?;

        // The member sees it all, marked private.
        sign_in(&c, w, "pmember").await?;
        goto(&c, w, "/privorg").await?;
        wait_css(&c, "tr[data-name='secret-app.flist']").await?;
        wait_css(&c, "#private-badge").await?;
        goto(&c, w, "/search?q=secret-app").await?;
        ensure(
            page_text(&c).await?.contains("secret-app.flist"),
            "search hides the flist from its member",
        )?;
        goto(&c, w, "/privorg/secret-app.flist.md").await?;
        wait_css(&c, "#contents").await?;
        for path in [
            "/privorg/secret-app.flist",
            "/privorg/secret-app.flist.md5",
            "/api/flist/privorg",
            "/api/flist/privorg/secret-app.flist",
        ] {
            let s = fetch_status(&c, path).await?;
            ensure(s == 200, format!("{path} answered {s} to the member"))?;
        }
        Ok(())
    });
}

#[test]
fn an_owner_manages_an_organisation_and_its_visibility_on_the_web() {
    browser_test("organisation", |c, w| async move {
        w.hub.token("webhelper", &[]).await;
        sign_in(&c, w, "orgboss").await?;
        // A new organisation from the user's own page.
        goto(&c, w, "/orgboss").await?;
        wait_css(&c, "#org-create-form input[name=name]")
            .await?
            .send_keys("webteam")
            .await
            .map_err(err("type name"))?;
        wait_css(&c, "#org-create-form button")
            .await?
            .click()
            .await
            .map_err(err("create"))?;
        wait_url(&c, "/webteam").await?;
        wait_css(&c, "#org-badge").await?;
        wait_css(&c, "tr[data-member='orgboss']").await?;
        // A member.
        wait_css(&c, "#member-add-form input[name=name]")
            .await?
            .send_keys("webhelper")
            .await
            .map_err(err("type member"))?;
        wait_css(&c, "#member-add-form button")
            .await?
            .click()
            .await
            .map_err(err("add"))?;
        wait_text(&c, "#flash", "webhelper is member of webteam.").await?;
        let row = text_of(&c, "tr[data-member='webhelper']").await?;
        ensure(row.contains("member"), format!("member row: {row}"))?;
        // Private, then visible only to members.
        wait_css(&c, "#visibility-form button")
            .await?
            .click()
            .await
            .map_err(err("make private"))?;
        wait_text(&c, "#flash", "webteam is private: only its members see it.").await?;
        wait_css(&c, "#private-badge").await?;
        let hub = w.hub.hub();
        let private = tokio::task::spawn_blocking(move || hub.catalog().is_private("webteam"))
            .await
            .map_err(err("join"))?
            .map_err(err("read"))?;
        ensure(private, "the catalog says private")?;
        // The owner acts for the organisation through the identity selector.
        let select = wait_css(&c, "select[name=active]").await?;
        select
            .select_by_value("webteam")
            .await
            .map_err(err("switch identity"))?;
        goto(&c, w, "/webteam").await?;
        wait_css(&c, "#manage").await?;
        // The member leaves: no longer listed, no longer a member in the catalog.
        wait_css(&c, "tr[data-member='webhelper'] .member-remove button")
            .await?
            .click()
            .await
            .map_err(err("remove"))?;
        wait_text(&c, "#flash", "Removed webhelper from webteam.").await?;
        ensure(
            c.find(Locator::Css("tr[data-member='webhelper']"))
                .await
                .is_err(),
            "the removed member is still listed",
        )?;
        let hub = w.hub.hub();
        let role =
            tokio::task::spawn_blocking(move || hub.accounts().org_role("webteam", "webhelper"))
                .await
                .map_err(err("join"))?
                .map_err(err("read"))?;
        ensure(role.is_none(), "still a member in the catalog")
    });
}
