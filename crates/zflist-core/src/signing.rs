//! Signed flists on the command line: `sign`, `verify --signature`, and the check behind
//! `mount --require-signature`. See [`flist_format::signature`] for what is signed.

use std::io::Write;
use std::path::Path;

use flist_format::signature::{
    verify, ExpectedName, PublicKey, SignatureDoc, SignatureError, SigningKey,
};
use serde_json::json;

use crate::error::{Error, ErrorKind, Result};
use crate::mount::load_flist_bytes;
use crate::response::Response;

fn sig_error(function: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(function, ErrorKind::Convert(format!("{what}: {e}")))
}

/// A public key given as base64 text or as a file holding it.
pub fn load_public_key(function: &str, key: &str) -> Result<PublicKey> {
    let text = if Path::new(key).is_file() {
        std::fs::read_to_string(key)
            .map_err(|e| Error::io(function, "reading", Path::new(key), e))?
    } else {
        key.to_string()
    };
    PublicKey::from_base64(&text).map_err(|e| sig_error(function, "key", e))
}

/// The hub's public key from `<hub>/api/signing-key`.
pub fn hub_key(function: &str, hub: &str) -> Result<PublicKey> {
    let url = format!("{}/api/signing-key", hub.trim_end_matches('/'));
    let body = load_flist_bytes(function, &url)?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| sig_error(function, &url, format!("not JSON: {e}")))?;
    let key = v["key"]
        .as_str()
        .ok_or_else(|| sig_error(function, &url, "no \"key\" in the answer"))?;
    PublicKey::from_base64(key).map_err(|e| sig_error(function, &url, e))
}

/// The name an flist is checked under: `--name`, the `repo/name` of a URL, or the file name.
fn expected_name<'a>(flist: &'a str, name: Option<&'a str>) -> ExpectedName<'a> {
    if let Some(n) = name {
        return ExpectedName::Full(n);
    }
    if flist.starts_with("http://") || flist.starts_with("https://") {
        let path = flist
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(_, p)| p.split(['?', '#']).next().unwrap_or(p))
            .unwrap_or("");
        let parts: Vec<&str> = path.rsplitn(3, '/').collect();
        if parts.len() >= 2 {
            let start = path.len() - parts[0].len() - parts[1].len() - 1;
            return ExpectedName::Full(&path[start..]);
        }
    }
    ExpectedName::FileName(flist.rsplit('/').next().unwrap_or(flist))
}

/// Checks the signature of flist `bytes` (fetched from `<flist>.sig`) against `trusted`.
///
/// When `<flist>.sig` is signed by another key (a hub's own signature) or is missing, an
/// author signature `<flist>.author.sig` (kept by the hub from `upload-flist`, or downloaded
/// next to the file) is checked instead if it names the trusted key.
pub fn check_signature(
    function: &str,
    flist: &str,
    bytes: &[u8],
    name: Option<&str>,
    trusted: &PublicKey,
) -> Result<SignatureDoc> {
    let sig_at = format!("{flist}.sig");
    let first = load_flist_bytes(function, &sig_at)
        .and_then(|sig| SignatureDoc::parse(&sig).map_err(|e| sig_error(function, &sig_at, e)));
    let first_err = match first {
        Ok(doc) => match verify(&doc, bytes, expected_name(flist, name), trusted) {
            Ok(()) => return Ok(doc),
            Err(e @ SignatureError::OtherKey { .. }) => {
                sig_error(function, &format!("signature of {flist}"), e)
            }
            Err(e) => return Err(sig_error(function, &format!("signature of {flist}"), e)),
        },
        Err(e) => e,
    };
    let author_at = format!("{flist}.author.sig");
    let Some(doc) = load_flist_bytes(function, &author_at)
        .ok()
        .and_then(|b| SignatureDoc::parse(&b).ok())
        .filter(|d| d.key.trim() == trusted.to_base64())
    else {
        return Err(first_err);
    };
    verify(&doc, bytes, expected_name(flist, name), trusted)
        .map_err(|e| sig_error(function, &format!("author signature of {flist}"), e))?;
    Ok(doc)
}

/// Signature options of `zflist verify`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SignatureArgs {
    /// Check `<FLIST>.sig` instead of the chunks: the bytes and name must be the signed ones.
    #[arg(long)]
    pub signature: bool,
    /// Trusted public key (base64, or a file holding it).
    #[arg(
        long,
        value_name = "KEY",
        requires = "signature",
        conflicts_with = "hub"
    )]
    pub key: Option<String>,
    /// Trust the key the hub publishes at URL/api/signing-key.
    #[arg(long, value_name = "URL", requires = "signature")]
    pub hub: Option<String>,
    /// The `repo/name.flist` the flist must be signed as (default: from its URL, or its
    /// file name).
    #[arg(long, value_name = "REPO/NAME", requires = "signature")]
    pub name: Option<String>,
}

/// `verify FLIST --signature [--key KEY | --hub URL] [--name repo/name.flist]`.
pub fn verify_signature(
    flist: &str,
    key: Option<&str>,
    hub: Option<&str>,
    name: Option<&str>,
) -> Result<Response> {
    let f = "verify";
    let trusted = match (key, hub) {
        (Some(k), _) => load_public_key(f, k)?,
        (None, Some(h)) => hub_key(f, h)?,
        (None, None) => {
            return Err(Error::usage(
                f,
                "--signature needs the trusted key: --key KEY or --hub URL",
            ))
        }
    };
    let bytes = load_flist_bytes(f, flist)?;
    let doc = check_signature(f, flist, &bytes, name, &trusted)?;
    Ok(Response::new(
        json!({"flist": flist, "signed": true, "name": doc.name, "sha256": doc.sha256, "key": doc.key}),
        format!(
            "{flist}: signature OK ({} signed by {}, sha256 {})\n",
            doc.name, doc.key, doc.sha256
        ),
    ))
}

/// `sign FLIST --key FILE [--name repo/name.flist]`: writes `FLIST.sig`. A key file that
/// does not exist is created (mode 0600) with a new key.
pub fn sign(flist: &Path, key_file: &Path, name: Option<&str>) -> Result<Response> {
    let f = "sign";
    let mut created = false;
    let key = if key_file.exists() {
        let text =
            std::fs::read_to_string(key_file).map_err(|e| Error::io(f, "reading", key_file, e))?;
        SigningKey::from_base64(&text)
            .map_err(|e| sig_error(f, &key_file.display().to_string(), e))?
    } else {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| sig_error(f, "random key", e))?;
        let key = SigningKey::from_seed(&seed);
        write_private(key_file, &key.to_base64())
            .map_err(|e| Error::io(f, "writing", key_file, e))?;
        created = true;
        key
    };
    let bytes = std::fs::read(flist).map_err(|e| Error::io(f, "reading", flist, e))?;
    let file_name = flist
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::usage(f, "the flist path has no file name"))?;
    let name = name.unwrap_or(file_name);
    let doc = key.sign(&bytes, name);
    let mut out = flist.as_os_str().to_owned();
    out.push(".sig");
    let out = std::path::PathBuf::from(out);
    let tmp = out.with_extension("sig.tmp");
    std::fs::write(&tmp, doc.to_json() + "\n")
        .and_then(|()| std::fs::rename(&tmp, &out))
        .map_err(|e| Error::io(f, "writing", &out, e))?;
    let mut text = String::new();
    if created {
        text.push_str(&format!(
            "created key {} (public key {})\n",
            key_file.display(),
            key.public_base64()
        ));
    }
    text.push_str(&format!("{}: signed as {name}\n", out.display()));
    Ok(Response::new(
        json!({"signature": out.display().to_string(), "name": name, "key": key.public_base64(), "created_key": created}),
        text,
    ))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            expected_name("http://h:1/alice/app.flist", None),
            ExpectedName::Full("alice/app.flist")
        );
        assert_eq!(
            expected_name("/tmp/x/app.flist", None),
            ExpectedName::FileName("app.flist")
        );
        assert_eq!(
            expected_name("/tmp/x/app.flist", Some("bob/app.flist")),
            ExpectedName::Full("bob/app.flist")
        );
    }
}
