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
use crate::session::{At, Session};

/// The reference's `metadata backend` defaults.
const DEFAULT_HOST: &str = "hub.grid.tf";
const DEFAULT_PORT: u16 = 9900;

/// `metadata [ACTION]` on a session: without an action, list the keys.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MetadataArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub at: At,
    /// What to print or set.
    #[command(subcommand)]
    pub action: Option<MetadataCmd>,
}

/// One `metadata` action, as the command line gives it. An action without options prints
/// its key (`metadata port` prints the ports); `Other([key])` prints a raw key,
/// `Other([key, value])` sets one.
#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum MetadataCmd {
    /// Where readers download chunks from (public: anyone with the flist reads it, so
    /// never put write credentials here). Without options: print it.
    Backend {
        /// 0-db host (default hub.grid.tf).
        #[arg(long)]
        host: Option<String>,
        /// 0-db port (default 9900).
        #[arg(long)]
        port: Option<u16>,
        /// 0-db unix socket path (instead of host and port).
        #[arg(long)]
        socket: Option<String>,
        /// 0-db namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Namespace password for reading (visible to anyone with the flist).
        #[arg(long)]
        password: Option<String>,
        /// Remove the backend.
        #[arg(long)]
        reset: bool,
    },
    /// Command to start: `--entrypoint "CMD ARGS"` (split like a shell does) or `-- CMD
    /// ARGS...`. Without arguments: print it.
    Entrypoint {
        /// Remove the entrypoint.
        #[arg(long)]
        reset: bool,
        /// The command line as one string, split into arguments like a shell does
        /// ('single' and "double" quotes, backslash escapes).
        #[arg(
            long = "entrypoint",
            value_name = "COMMAND LINE",
            conflicts_with = "argv"
        )]
        line: Option<String>,
        /// The command and its arguments (put `--` before them).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGV"
        )]
        argv: Vec<String>,
    },
    /// Environment variables. Without options: print them.
    Environ {
        /// Variable name.
        #[arg(long)]
        name: Option<String>,
        /// Its value.
        #[arg(long)]
        value: Option<String>,
        /// Remove the variable --name.
        #[arg(long)]
        unset: bool,
        /// Remove all variables.
        #[arg(long)]
        reset: bool,
    },
    /// Exposed ports: `--in P [--out Q]` gives `{"<protocol>/P": Q}`. Without options:
    /// print them.
    Port {
        /// Protocol (tcp or udp).
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// Incoming port (alias --host).
        #[arg(long = "in", alias = "host")]
        port_in: Option<u32>,
        /// Where it is redirected (alias --container; default: the same).
        #[arg(long = "out", alias = "container")]
        port_out: Option<u32>,
        /// Remove the port --in.
        #[arg(long)]
        unset: bool,
        /// Remove all ports.
        #[arg(long)]
        reset: bool,
    },
    /// Volumes to mount. Without options: print them.
    Volume {
        /// Mount point inside the container.
        #[arg(long)]
        target: Option<String>,
        /// Host path to mount there.
        #[arg(long)]
        host: Option<String>,
        /// Remove the volume --target.
        #[arg(long)]
        unset: bool,
        /// Remove all volumes.
        #[arg(long)]
        reset: bool,
    },
    /// Readme text and license. Without options: print them.
    Readme {
        /// File whose content becomes the readme.
        #[arg(long)]
        import: Option<PathBuf>,
        /// License name (e.g. Apache-2.0).
        #[arg(long)]
        license: Option<String>,
        /// Remove the readme.
        #[arg(long)]
        reset: bool,
    },
    /// `metadata <key>` prints a value, `metadata <key> <value>` sets it.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

impl MetadataCmd {
    /// `metadata <key>`: print a raw key.
    pub fn get(key: impl Into<String>) -> Self {
        MetadataCmd::Other(vec![key.into()])
    }

    /// `metadata <key> <value>`: set a raw key.
    pub fn set(key: impl Into<String>, value: impl Into<String>) -> Self {
        MetadataCmd::Other(vec![key.into(), value.into()])
    }

    /// The key this action prints, when it is a query (no option given).
    fn query(&self) -> Result<Option<&str>> {
        use MetadataCmd as M;
        Ok(match self {
            M::Backend {
                host: None,
                port: None,
                socket: None,
                namespace: None,
                password: None,
                reset: false,
            } => Some(KEY_BACKEND),
            M::Entrypoint {
                reset: false,
                line: None,
                argv,
            } if argv.is_empty() => Some(KEY_ENTRYPOINT),
            M::Environ {
                name: None,
                value: None,
                unset: false,
                reset: false,
            } => Some(KEY_ENVIRON),
            M::Port {
                port_in: None,
                port_out: None,
                unset: false,
                reset: false,
                ..
            } => Some(KEY_PORT),
            M::Volume {
                target: None,
                host: None,
                unset: false,
                reset: false,
            } => Some(KEY_VOLUME),
            M::Readme {
                import: None,
                license: None,
                reset: false,
            } => Some(KEY_README),
            M::Other(v) => match v.as_slice() {
                [key] => Some(key.as_str()),
                [_, _] => None,
                _ => {
                    return Err(Error::usage(
                        "metadata",
                        "expected `metadata <key>` or `metadata <key> <value>`",
                    ))
                }
            },
            _ => None,
        })
    }
}

fn md_err(e: impl std::fmt::Display) -> Error {
    Error::new("metadata", ErrorKind::Metadata(e.to_string()))
}

/// `metadata [action]` on the session: no action lists the keys, an action without
/// options prints its key, any other sets it.
pub fn metadata(session: &Session, cmd: Option<&MetadataCmd>) -> Result<Response> {
    let Some(cmd) = cmd else {
        return Ok(list(&session.load("metadata")?.metadata));
    };
    if let Some(key) = cmd.query()? {
        return get(&session.load("metadata")?.metadata, key);
    }
    // a bad command line is refused before the session is read
    let entrypoint = match cmd {
        MetadataCmd::Entrypoint {
            line: Some(l),
            reset: false,
            ..
        } => Some(
            split_command_line(l)
                .map_err(|e| Error::usage("metadata", format!("--entrypoint: {e}")))?,
        ),
        _ => None,
    };
    let mut flist = session.load("metadata")?;
    apply(&mut flist.metadata, cmd, entrypoint)?;
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

/// Applies a setter to `md` (`entrypoint`: the `--entrypoint` line already split).
fn apply(md: &mut Metadata, cmd: &MetadataCmd, entrypoint: Option<Vec<String>>) -> Result<()> {
    match cmd {
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
                host: host.clone().unwrap_or_else(|| DEFAULT_HOST.into()),
                port: port.unwrap_or(DEFAULT_PORT),
                namespace: namespace.clone(),
                password: password.clone(),
                token: None,
            },
            Some(sock) => Backend::ZdbSocket {
                socket: sock.clone(),
                namespace: namespace.clone(),
                password: password.clone(),
                host: host.clone().unwrap_or_else(|| DEFAULT_HOST.into()),
            },
        }),
        MetadataCmd::Entrypoint { reset: true, .. } => {
            md.remove(KEY_ENTRYPOINT);
        }
        MetadataCmd::Entrypoint {
            argv, reset: false, ..
        } => md.set_entrypoint(entrypoint.as_ref().unwrap_or(argv)),
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
        MetadataCmd::Other(kv) => {
            if let [key, value] = kv.as_slice() {
                if key.is_empty() {
                    return Err(md_err("empty metadata key"));
                }
                md.set(key.clone(), value.clone());
            }
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
