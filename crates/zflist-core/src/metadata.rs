//! The `metadata` command: list, get, and the setters of the reference tool (`backend`,
//! `entrypoint`, `environ`, `port`, `volume`, `readme`, and raw keys).

use std::path::PathBuf;

use flist_format::metadata::{
    Backend, Metadata, Readme, Volume, KEY_BACKEND, KEY_ENTRYPOINT, KEY_ENVIRON, KEY_PORT,
    KEY_README, KEY_VOLUME,
};
use serde_json::{json, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::response::Response;
use crate::session::Session;

/// One `metadata` invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataCmd {
    /// `metadata`: list the keys.
    List,
    /// `metadata <key>`: print a value.
    Get(String),
    /// `metadata backend ...`.
    Backend {
        /// Host (reference default `hub.grid.tf`).
        host: String,
        /// Port (reference default 9900).
        port: u16,
        /// Unix socket path (sets port 0).
        socket: Option<String>,
        /// Namespace.
        namespace: Option<String>,
        /// Password (readable by anyone who has the flist).
        password: Option<String>,
        /// Remove the key.
        reset: bool,
    },
    /// `metadata entrypoint [--reset] -- argv...`.
    Entrypoint {
        /// The command line.
        argv: Vec<String>,
        /// Remove the key.
        reset: bool,
    },
    /// `metadata environ --name N --value V | --unset | --reset`.
    Environ {
        /// Variable name.
        name: Option<String>,
        /// Value.
        value: Option<String>,
        /// Remove the variable.
        unset: bool,
        /// Remove the key.
        reset: bool,
    },
    /// `metadata port --in P [--out Q] [--protocol tcp] | --unset | --reset`.
    Port {
        /// Protocol (default `tcp`).
        protocol: String,
        /// Incoming port.
        port_in: Option<u32>,
        /// Where it is redirected (default: the same).
        port_out: Option<u32>,
        /// Remove the mapping.
        unset: bool,
        /// Remove the key.
        reset: bool,
    },
    /// `metadata volume --target T [--host H] | --unset | --reset`.
    Volume {
        /// Mount target.
        target: Option<String>,
        /// Host path.
        host: Option<String>,
        /// Remove the volume.
        unset: bool,
        /// Remove the key.
        reset: bool,
    },
    /// `metadata readme [--import FILE] [--license NAME] | --reset`.
    Readme {
        /// Read the text from this file.
        import: Option<PathBuf>,
        /// License name.
        license: Option<String>,
        /// Remove the key.
        reset: bool,
    },
    /// `metadata <key> <value>`: a raw value.
    Set {
        /// Key.
        key: String,
        /// Raw value.
        value: String,
    },
}

fn md_err(e: impl std::fmt::Display) -> Error {
    Error::new("metadata", ErrorKind::Metadata(e.to_string()))
}

/// `metadata` on the session.
pub fn metadata(session: &Session, cmd: &MetadataCmd) -> Result<Response> {
    let mut flist = session.load("metadata")?;
    match cmd {
        MetadataCmd::List => return Ok(list(&flist.metadata)),
        MetadataCmd::Get(key) => return get(&flist.metadata, key),
        _ => {}
    }
    apply(&mut flist.metadata, cmd)?;
    session.save("metadata", &flist)?;
    Ok(Response::empty())
}

/// The list of keys.
pub fn list(md: &Metadata) -> Response {
    let keys: Vec<&str> = md.iter().map(|(k, _)| k).collect();
    let mut text = keys.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    Response::new(json!(keys), text)
}

/// One value: raw in text mode, `{"metadata": key, "value": parsed-or-string}` in JSON. The
/// backend is shown in its public form (a password as `"***"`).
pub fn get(md: &Metadata, key: &str) -> Result<Response> {
    if key == KEY_BACKEND && md.get(key).is_some() {
        let value = metadata_json(md)
            .get(KEY_BACKEND)
            .cloned()
            .unwrap_or(Value::Null);
        let text = match &value {
            Value::String(s) => format!("{s}\n"),
            v => format!("{}\n", flist_format::metadata::to_reference_json(v)),
        };
        return Ok(Response::new(
            json!({"metadata": key, "value": value}),
            text,
        ));
    }
    let raw = md.get(key).ok_or_else(|| {
        Error::new(
            "metadata",
            ErrorKind::Metadata(format!("{key}: metadata not found")),
        )
    })?;
    let value: Value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    Ok(Response::new(
        json!({"metadata": key, "value": value}),
        format!("{raw}\n"),
    ))
}

/// Applies a setter to `md`.
pub fn apply(md: &mut Metadata, cmd: &MetadataCmd) -> Result<()> {
    match cmd {
        MetadataCmd::List | MetadataCmd::Get(_) => {}
        MetadataCmd::Backend { reset: true, .. } => {
            md.remove(KEY_BACKEND);
        }
        MetadataCmd::Backend {
            host,
            port,
            socket,
            namespace,
            password,
            reset: false,
        } => md.set_backend(&match socket {
            None => Backend::Zdb {
                host: host.clone(),
                port: *port,
                namespace: namespace.clone(),
                password: password.clone(),
                token: None,
            },
            Some(sock) => Backend::ZdbSocket {
                socket: sock.clone(),
                namespace: namespace.clone(),
                password: password.clone(),
                host: host.clone(),
            },
        }),
        MetadataCmd::Entrypoint { reset: true, .. } => {
            md.remove(KEY_ENTRYPOINT);
        }
        MetadataCmd::Entrypoint { argv, reset: false } => md.set_entrypoint(argv),
        MetadataCmd::Environ { reset: true, .. } => {
            md.remove(KEY_ENVIRON);
        }
        MetadataCmd::Environ {
            name,
            value,
            unset,
            reset: false,
        } => {
            let name = name
                .as_ref()
                .ok_or_else(|| md_err("missing environment variable name (--name)"))?;
            let mut env = md.environ().map_err(md_err)?.unwrap_or_default();
            if *unset {
                env.shift_remove(name);
            } else {
                let value = value
                    .as_ref()
                    .ok_or_else(|| md_err("missing environment variable value (--value)"))?;
                env.insert(name.clone(), value.clone());
            }
            md.set_environ(&env);
        }
        MetadataCmd::Port { reset: true, .. } => {
            md.remove(KEY_PORT);
        }
        MetadataCmd::Port {
            protocol,
            port_in,
            port_out,
            unset,
            reset: false,
        } => {
            let pin = port_in
                .filter(|p| *p > 0)
                .ok_or_else(|| md_err("missing input port number (--in)"))?;
            let pout = port_out.filter(|p| *p > 0).unwrap_or(pin);
            let key = format!("{protocol}/{pin}");
            let mut ports = md.ports().map_err(md_err)?.unwrap_or_default();
            if *unset {
                ports.shift_remove(&key);
            } else {
                ports.insert(key, i64::from(pout));
            }
            md.set_ports(&ports);
        }
        MetadataCmd::Volume { reset: true, .. } => {
            md.remove(KEY_VOLUME);
        }
        MetadataCmd::Volume {
            target,
            host,
            unset,
            reset: false,
        } => {
            let target = target
                .as_ref()
                .ok_or_else(|| md_err("missing target path (--target)"))?;
            let mut vols = md.volumes().map_err(md_err)?.unwrap_or_default();
            if *unset {
                vols.shift_remove(target);
            } else {
                vols.insert(target.clone(), Volume { host: host.clone() });
            }
            md.set_volumes(&vols);
        }
        MetadataCmd::Readme { reset: true, .. } => {
            md.remove(KEY_README);
        }
        MetadataCmd::Readme {
            import,
            license,
            reset: false,
        } => {
            let mut r = md.readme().map_err(md_err)?.unwrap_or(Readme {
                readme: String::new(),
                license: None,
            });
            if let Some(path) = import {
                let bytes =
                    std::fs::read(path).map_err(|e| Error::io("metadata", "reading", path, e))?;
                r.readme = String::from_utf8(bytes).map_err(|_| {
                    md_err(format!("{}: the readme is not UTF-8 text", path.display()))
                })?;
            }
            if let Some(l) = license {
                r.license = Some(l.clone());
            }
            md.set_readme(&r);
        }
        MetadataCmd::Set { key, value } => {
            if key.is_empty() {
                return Err(md_err("empty metadata key"));
            }
            md.set(key.clone(), value.clone());
        }
    }
    Ok(())
}

/// All metadata as one JSON object, values parsed when they are JSON; the backend in its
/// public form (a password or token shown as `"***"`, never its value), or `"(invalid)"`
/// when it cannot be parsed (it might hide credentials).
pub fn metadata_json(md: &Metadata) -> Value {
    let mut o = serde_json::Map::new();
    for (k, v) in md.iter() {
        let value = if k == KEY_BACKEND {
            match Backend::parse(v) {
                Ok(b) => {
                    let mut shown = b.to_public_value();
                    if let (
                        Value::Object(m),
                        Backend::Zdb {
                            password, token, ..
                        },
                    ) = (&mut shown, &b)
                    {
                        for (name, secret) in [("password", password), ("token", token)] {
                            if secret.is_some() {
                                m.insert(name.into(), json!("***"));
                            }
                        }
                    } else if let (
                        Value::Object(m),
                        Backend::ZdbSocket {
                            password: Some(_), ..
                        },
                    ) = (&mut shown, &b)
                    {
                        m.insert("password".into(), json!("***"));
                    }
                    shown
                }
                Err(e) => json!(format!("(invalid: {e})")),
            }
        } else {
            serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()))
        };
        o.insert(k.to_string(), value);
    }
    Value::Object(o)
}

/// Splits a command line into arguments like a POSIX shell does, without expanding
/// anything: whitespace separates arguments, `'...'` keeps everything literally, `"..."`
/// keeps everything but `\"`, `\\`, `\$` and `` \` `` escapes, and a backslash outside
/// quotes escapes the next character (`zflist metadata entrypoint --entrypoint "..."`).
pub fn split_command_line(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_arg {
                    args.push(std::mem::take(&mut cur));
                    in_arg = false;
                }
            }
            '\'' => {
                in_arg = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_arg = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_arg = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("a trailing \\ escapes nothing".into()),
                }
            }
            c => {
                in_arg = true;
                cur.push(c);
            }
        }
    }
    if in_arg {
        args.push(cur);
    }
    if args.is_empty() {
        return Err("empty command line".into());
    }
    Ok(args)
}

#[cfg(test)]
mod split_tests {
    use super::split_command_line as split;

    #[test]
    fn shell_like_splitting() {
        assert_eq!(
            split("/bin/sh -c 'echo hi'").expect("ok"),
            ["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(
            split(r#"  a "b \"c\" $d"   e\ f ''  "#).expect("ok"),
            ["a", "b \"c\" $d", "e f", ""]
        );
        assert_eq!(split(r#""a\nb""#).expect("ok"), ["a\\nb"]);
        assert!(split("'open").is_err());
        assert!(split("\"open").is_err());
        assert!(split("x\\").is_err());
        assert!(split("   ").is_err());
    }
}
