//! Flist arguments given as URLs: `zflist inspect https://hub/alice/app.flist` downloads the
//! file to a private temporary file and checks it against the hub's `<url>.md5` when the
//! hub offers one (the old hub and ours both do).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::error::{Error, ErrorKind, Result};
use crate::response::Progress;

/// Largest flist accepted from a URL (the hub refuses bigger uploads long before this).
pub const MAX_DOWNLOAD: u64 = 4 << 30;

/// An flist given on the command line: a local file, or a URL downloaded to a temporary
/// file that lives as long as this value.
#[derive(Debug)]
pub struct FlistArg {
    path: PathBuf,
    url: Option<String>,
    md5_checked: bool,
    _temp: Option<tempfile::TempPath>,
}

impl FlistArg {
    /// The local file to open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The URL it came from, if any.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// Whether the download was checked against the hub's md5.
    pub fn md5_checked(&self) -> bool {
        self.md5_checked
    }

    /// How to name it in output: the URL (credentials redacted) or the path.
    pub fn display(&self) -> String {
        match &self.url {
            Some(u) => redact(u),
            None => self.path.display().to_string(),
        }
    }
}

/// True when `arg` is an `http://` or `https://` URL rather than a path.
pub fn is_url(arg: &Path) -> bool {
    arg.to_str().is_some_and(|s| {
        let l = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        l.starts_with("http://") || l.starts_with("https://")
    })
}

/// `http://user:pw@host/x` → `http://user:***@host/x`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (auth, path) = rest.split_at(end);
    match auth.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{path}"),
        None => url.to_string(),
    }
}

fn client() -> std::result::Result<reqwest::blocking::Client, reqwest::Error> {
    reqwest::blocking::Client::builder()
        .connect_timeout(crate::failover::config().connect_timeout)
        .timeout(None)
        .user_agent(concat!("zflist/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn net_err(function: &str, url: &str, what: impl std::fmt::Display) -> Error {
    Error::new(
        function,
        ErrorKind::Download(format!("downloading {}: {what}", redact(url))),
    )
}

/// Resolves an flist argument: a local path as is, a URL downloaded (with progress) into a
/// temporary file and checked against `<url>.md5` when the server offers it.
pub fn resolve(function: &str, arg: &Path, progress: &dyn Progress) -> Result<FlistArg> {
    if !is_url(arg) {
        return Ok(FlistArg {
            path: arg.to_path_buf(),
            url: None,
            md5_checked: false,
            _temp: None,
        });
    }
    let first = arg.to_str().unwrap_or_default().to_string();
    let client = client().map_err(|e| net_err(function, &first, e))?;
    // The URL's own hub first, then the same path on the other hubs (`--hub`): a hub that
    // cannot be reached or answers 5xx is skipped.
    let candidates = crate::failover::config().candidates(&first);
    let mut failures = Vec::new();
    for url in &candidates {
        match fetch(function, &client, url, progress) {
            Ok(f) => return Ok(f),
            Err(Fetch::Fatal(e)) => return Err(e),
            Err(Fetch::Unreachable(why)) => failures.push(format!("{}: {why}", redact(url))),
        }
    }
    if let [one] = &failures[..] {
        let why = one.split_once(": ").map_or(one.as_str(), |x| x.1);
        return Err(net_err(function, &first, why));
    }
    Err(Error::new(
        function,
        ErrorKind::Download(format!("no hub could serve it: {}", failures.join("; "))),
    ))
}

/// Why one download attempt failed.
enum Fetch {
    /// The hub is unreachable or failing (connection, timeout, 5xx): try another.
    Unreachable(String),
    /// Anything else (4xx, a bad body, a local error): stop.
    Fatal(Error),
}

impl From<Error> for Fetch {
    fn from(e: Error) -> Self {
        Fetch::Fatal(e)
    }
}

/// Downloads `url` into a temporary file, checked against `<url>.md5` when offered.
fn fetch(
    function: &str,
    client: &reqwest::blocking::Client,
    url: &str,
    progress: &dyn Progress,
) -> std::result::Result<FlistArg, Fetch> {
    let url = url.to_string();
    let mut req = client.get(&url);
    // A private repository's flist: the hub checks the token (reqwest drops the header on
    // a redirect to another host).
    if let Some(t) = crate::failover::config().token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().map_err(|e| Fetch::Unreachable(describe(&e)))?;
    let status = resp.status();
    if status.is_server_error() {
        return Err(Fetch::Unreachable(format!("the server answered {status}")));
    }
    if !status.is_success() {
        return Err(Fetch::Fatal(net_err(
            function,
            &url,
            format!("the server answered {status}"),
        )));
    }
    Ok(receive(function, client, &url, resp, progress)?)
}

/// Reads an answer's body into a temporary file and checks it against `<url>.md5`.
fn receive(
    function: &str,
    client: &reqwest::blocking::Client,
    url: &str,
    mut resp: reqwest::blocking::Response,
    progress: &dyn Progress,
) -> Result<FlistArg> {
    let url = url.to_string();
    let total = resp.content_length().unwrap_or(0);
    if total > MAX_DOWNLOAD {
        return Err(net_err(
            function,
            &url,
            format!("{total} bytes is more than the {MAX_DOWNLOAD} bytes accepted"),
        ));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".zflist-download-")
        .suffix(".flist")
        .tempfile()
        .map_err(|e| {
            Error::io(
                function,
                "creating a temporary file in",
                &std::env::temp_dir(),
                e,
            )
        })?;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got: u64 = 0;
    loop {
        let n = resp
            .read(&mut buf)
            .map_err(|e| net_err(function, &url, format!("reading the body: {e}")))?;
        if n == 0 {
            break;
        }
        got += n as u64;
        if got > MAX_DOWNLOAD {
            return Err(net_err(
                function,
                &url,
                format!("more than the {MAX_DOWNLOAD} bytes accepted"),
            ));
        }
        md5.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(|e| Error::io(function, "writing", tmp.path(), e))?;
        progress.transfer("downloading", got, total, 0);
    }
    if total > 0 && got != total {
        return Err(net_err(
            function,
            &url,
            format!("the connection ended after {got} of {total} bytes"),
        ));
    }
    tmp.flush()
        .map_err(|e| Error::io(function, "writing", tmp.path(), e))?;
    progress.finish("downloaded");
    let have = hex::encode(md5.finalize());
    let md5_checked = match offered_md5(client, &url) {
        Some(want) if want == have => true,
        Some(want) => {
            return Err(net_err(
                function,
                &url,
                format!("the file's md5 is {have} but the server's {url}.md5 says {want} (corrupted or changed during the download; try again)", url = redact(&url)),
            ))
        }
        None => false,
    };
    let path = tmp.path().to_path_buf();
    Ok(FlistArg {
        path,
        url: Some(url),
        md5_checked,
        _temp: Some(tmp.into_temp_path()),
    })
}

/// The hex md5 at `<url>.md5` (first 32 hex digits of a 200 answer), `None` when the server
/// offers none.
fn offered_md5(client: &reqwest::blocking::Client, url: &str) -> Option<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let md5_url = match query {
        Some(q) => format!("{base}.md5?{q}"),
        None => format!("{base}.md5"),
    };
    let mut req = client.get(md5_url);
    if let Some(t) = crate::failover::config().token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let text = resp.text().ok()?;
    let word = text.split_whitespace().next()?.to_ascii_lowercase();
    (word.len() == 32 && word.bytes().all(|b| b.is_ascii_hexdigit())).then_some(word)
}

/// A short reason for a transport error (reqwest's own chain, without the URL twice).
fn describe(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    match parts.last() {
        Some(root) => format!("{kind}: {root}"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_url(Path::new("http://h/x.flist")));
        assert!(is_url(Path::new("HTTPS://h/x.flist")));
        assert!(!is_url(Path::new("./http://x")));
        assert!(!is_url(Path::new("x.flist")));
        assert_eq!(redact("http://u:p@h/x"), "http://***@h/x");
        assert_eq!(redact("http://h/x"), "http://h/x");
    }
}
