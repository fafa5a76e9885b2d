//! Image config → flist metadata and the ZOS `/.startup.toml`.

use flist_format::{Metadata, Volume};
use indexmap::IndexMap;

use super::manifest::RuntimeConfig;

/// Path of the startup file added to the tree.
pub const STARTUP_PATH: &str = ".startup.toml";
/// Metadata key of the working directory (raw string).
pub const KEY_WORKDIR: &str = "workdir";

/// Docker's rule: `Entrypoint` followed by `Cmd` (`Cmd` alone without an entrypoint).
pub(crate) fn argv(cfg: &RuntimeConfig) -> Vec<String> {
    let mut v: Vec<String> = cfg.entrypoint.clone().unwrap_or_default();
    v.extend(cfg.cmd.clone().unwrap_or_default());
    v
}

/// `NAME=value` list → map (later duplicates win; an entry without `=` has an empty value).
pub(crate) fn environ(cfg: &RuntimeConfig) -> IndexMap<String, String> {
    let mut m = IndexMap::new();
    for e in cfg.env.iter().flatten() {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        if !k.is_empty() {
            m.insert(k.to_string(), v.to_string());
        }
    }
    m
}

/// `ExposedPorts` (`"80/tcp"`, `"53/udp"`, `"8080"`) → `{"tcp/80": 80, ...}`.
pub(crate) fn ports(cfg: &RuntimeConfig) -> IndexMap<String, i64> {
    let mut m = IndexMap::new();
    for k in cfg.exposed_ports.iter().flat_map(|p| p.keys()) {
        let (port, proto) = k.split_once('/').unwrap_or((k.as_str(), "tcp"));
        // a range "8000-8010/tcp" keeps its first port
        let first = port.split('-').next().unwrap_or(port);
        if let Ok(n) = first.trim().parse::<u16>() {
            m.insert(
                format!("{}/{}", proto.to_ascii_lowercase(), port.trim()),
                i64::from(n),
            );
        }
    }
    m
}

/// Sets the metadata keys an image config defines; keys for empty values are not written.
pub(crate) fn to_metadata(cfg: &RuntimeConfig, md: &mut Metadata) {
    let argv = argv(cfg);
    if !argv.is_empty() {
        md.set_entrypoint(&argv);
    }
    let env = environ(cfg);
    if !env.is_empty() {
        md.set_environ(&env);
    }
    let ports = ports(cfg);
    if !ports.is_empty() {
        md.set_ports(&ports);
    }
    let vols: IndexMap<String, Volume> = cfg
        .volumes
        .iter()
        .flat_map(|v| v.keys())
        .map(|k| (k.clone(), Volume::default()))
        .collect();
    if !vols.is_empty() {
        md.set_volumes(&vols);
    }
    if let Some(w) = cfg.working_dir.as_deref().filter(|w| !w.is_empty()) {
        md.set(KEY_WORKDIR, w);
    }
}

fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The ZOS container entry for an image config:
///
/// ```toml
/// [startup.entry]
/// name = "core.system"
///
/// [startup.entry.args]
/// name = "/bin/app"
/// args = ["--flag"]
/// dir = "/srv"
/// env = { "PATH" = "/usr/bin" }
/// ```
pub fn startup_toml(cfg: &RuntimeConfigView<'_>) -> String {
    let argv = cfg.argv;
    let name = argv.first().map(String::as_str).unwrap_or("");
    let args: Vec<String> = argv.iter().skip(1).map(|a| toml_str(a)).collect();
    let env: Vec<String> = cfg
        .env
        .iter()
        .map(|(k, v)| format!("{} = {}", toml_str(k), toml_str(v)))
        .collect();
    let dir = cfg.dir.filter(|d| !d.is_empty()).unwrap_or("/");
    format!(
        "[startup.entry]\nname = \"core.system\"\n\n[startup.entry.args]\nname = {}\nargs = [{}]\ndir = {}\nenv = {{{}}}\n",
        toml_str(name),
        args.join(", "),
        toml_str(dir),
        if env.is_empty() { String::new() } else { format!(" {} ", env.join(", ")) }
    )
}

/// What [`startup_toml`] needs from an image config.
#[derive(Clone, Copy, Debug)]
pub struct RuntimeConfigView<'a> {
    /// Entrypoint followed by command.
    pub argv: &'a [String],
    /// Environment.
    pub env: &'a IndexMap<String, String>,
    /// Working directory.
    pub dir: Option<&'a str>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let cfg = RuntimeConfig {
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec!["echo \"hi\"".into()]),
            env: Some(vec!["A=1".into(), "B=x=y".into(), "C".into()]),
            exposed_ports: Some(
                [
                    ("80/tcp".to_string(), serde_json::json!({})),
                    ("53/udp".into(), serde_json::json!({})),
                ]
                .into(),
            ),
            ..Default::default()
        };
        assert_eq!(argv(&cfg), ["/bin/sh", "-c", "echo \"hi\""]);
        let env = environ(&cfg);
        assert_eq!(env.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(env.get("C").map(String::as_str), Some(""));
        let p = ports(&cfg);
        assert_eq!(p.get("tcp/80"), Some(&80));
        assert_eq!(p.get("udp/53"), Some(&53));
        let cmd_only = RuntimeConfig {
            cmd: Some(vec!["nginx".into()]),
            ..Default::default()
        };
        assert_eq!(argv(&cmd_only), ["nginx"]);
        let a = argv(&cfg);
        let t = startup_toml(&RuntimeConfigView {
            argv: &a,
            env: &env,
            dir: None,
        });
        assert!(t.contains("args = [\"-c\", \"echo \\\"hi\\\"\"]"), "{t}");
        assert!(t.contains("dir = \"/\""));
    }
}
