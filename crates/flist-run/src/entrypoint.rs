//! The command an flist records, and its program looked up in the tree.
//!
//! Two places record it: the metadata written by the docker conversion (`entrypoint`: the
//! image's `Entrypoint` followed by its `Cmd`, `environ`: its `Env`, `workdir`: its
//! `WorkingDir`), and `/.startup.toml`, the ZOS container description hub-made flists carry:
//!
//! ```toml
//! [startup.entry]
//! name = "core.system"
//!
//! [startup.entry.args]
//! name = "/bin/app"
//! args = ["--flag"]
//! dir = "/srv"
//! env = { "PATH" = "/usr/bin" }
//! ```
//!
//! The metadata wins when both are present.

use flist_format::{Kind, Metadata, Tree};
use indexmap::IndexMap;

use crate::error::RunError;

/// Path of the hub's startup description inside an flist.
pub const STARTUP_TOML: &str = "/.startup.toml";
/// Metadata key of the working directory (the docker conversion's `WorkingDir`).
pub const KEY_WORKDIR: &str = "workdir";
/// `PATH` when the flist records none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a command came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The `entrypoint` metadata.
    Metadata,
    /// `/.startup.toml`.
    StartupToml,
    /// The command line (`--entrypoint`, or arguments replacing the command).
    CommandLine,
}

/// A command to start: program and arguments, environment, working directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entrypoint {
    /// `argv[0]` is the program (a path, or a name searched in `PATH`).
    pub argv: Vec<String>,
    /// Environment, in order.
    pub env: IndexMap<String, String>,
    /// Working directory inside the flist (`/` when not recorded).
    pub workdir: String,
    /// Where `argv` came from.
    pub source: Source,
}

impl Entrypoint {
    /// The command recorded by the flist: its metadata, else `startup_toml` (the content of
    /// `/.startup.toml`, when the flist has one). `None` when neither records a program.
    pub fn recorded(
        metadata: &Metadata,
        startup_toml: Option<&str>,
    ) -> Result<Option<Entrypoint>, RunError> {
        let bad = |reason: String| RunError::Recorded {
            what: "metadata".into(),
            reason,
        };
        let argv = metadata
            .entrypoint()
            .map_err(|e| bad(e.to_string()))?
            .unwrap_or_default();
        if argv.first().is_some_and(|p| !p.is_empty()) {
            let env = metadata
                .environ()
                .map_err(|e| bad(e.to_string()))?
                .unwrap_or_default();
            let workdir = metadata
                .get(KEY_WORKDIR)
                .filter(|w| !w.is_empty())
                .unwrap_or("/")
                .to_string();
            return Ok(Some(Entrypoint {
                argv,
                env,
                workdir,
                source: Source::Metadata,
            }));
        }
        match startup_toml {
            Some(text) => parse_startup_toml(text),
            None => Ok(None),
        }
    }

    /// Applies the command line: `program` (`--entrypoint`) replaces the program and drops
    /// the recorded arguments; `args` (after `--`) follow the given program, or without
    /// one replace the whole recorded command. `env` items are `K=V` (or `K`, taking the
    /// value from this process's environment) and override the recorded ones.
    pub fn with_overrides(
        recorded: Option<Entrypoint>,
        program: Option<&str>,
        args: &[String],
        env: &[String],
    ) -> Result<Entrypoint, RunError> {
        let mut e = recorded.unwrap_or(Entrypoint {
            argv: Vec::new(),
            env: IndexMap::new(),
            workdir: "/".into(),
            source: Source::CommandLine,
        });
        if let Some(p) = program {
            e.argv = std::iter::once(p.to_string())
                .chain(args.iter().cloned())
                .collect();
            e.source = Source::CommandLine;
        } else if !args.is_empty() {
            e.argv = args.to_vec();
            e.source = Source::CommandLine;
        }
        if e.argv.first().is_none_or(|p| p.is_empty()) {
            return Err(RunError::NoEntrypoint);
        }
        for item in env {
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (item.clone(), std::env::var(item).unwrap_or_default()),
            };
            if k.is_empty() || k.contains('\0') || v.contains('\0') {
                return Err(RunError::Recorded {
                    what: "--env".into(),
                    reason: format!("{item:?}: expected NAME=VALUE"),
                });
            }
            e.env.insert(k, v);
        }
        Ok(e)
    }

    /// The `PATH` the program is searched in.
    pub fn path_var(&self) -> &str {
        self.env
            .get("PATH")
            .map(String::as_str)
            .unwrap_or(DEFAULT_PATH)
    }

    /// The environment the process gets: the recorded one plus `PATH` (when missing),
    /// `HOSTNAME` and `HOME` (when missing), like Docker.
    pub fn process_env(&self, hostname: &str) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        if !env.contains_key("PATH") {
            env.insert("PATH".into(), DEFAULT_PATH.into());
        }
        env.entry("HOSTNAME".into())
            .or_insert_with(|| hostname.to_string());
        env.entry("HOME".into()).or_insert_with(|| "/root".into());
        env.into_iter().collect()
    }
}

#[derive(serde::Deserialize)]
struct StartupFile {
    startup: Option<IndexMap<String, StartupEntry>>,
}

#[derive(serde::Deserialize)]
struct StartupEntry {
    name: Option<String>,
    args: Option<StartupArgs>,
}

#[derive(serde::Deserialize)]
struct StartupArgs {
    name: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    dir: Option<String>,
    #[serde(default)]
    env: IndexMap<String, String>,
}

/// The command of a `/.startup.toml`: its `[startup.entry]` (else the first entry whose
/// `name` is `core.system`). `None` when it names no program.
pub fn parse_startup_toml(text: &str) -> Result<Option<Entrypoint>, RunError> {
    let bad = |reason: String| RunError::Recorded {
        what: STARTUP_TOML.into(),
        reason,
    };
    let file: StartupFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let entries = file.startup.unwrap_or_default();
    let entry = entries.get("entry").or_else(|| {
        entries
            .values()
            .find(|e| e.name.as_deref() == Some("core.system"))
    });
    let Some(args) = entry.and_then(|e| e.args.as_ref()) else {
        return Ok(None);
    };
    let Some(program) = args.name.as_deref().filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    Ok(Some(Entrypoint {
        argv: std::iter::once(program.to_string())
            .chain(args.args.iter().cloned())
            .collect(),
        env: args.env.clone(),
        workdir: args
            .dir
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".into()),
        source: Source::StartupToml,
    }))
}

/// The absolute path inside `tree` of `program` (a path, relative ones from `workdir`, or
/// a name searched in `path_var`), links followed inside the flist; an error saying why it
/// cannot be executed otherwise.
pub fn find_program(
    tree: &Tree,
    program: &str,
    workdir: &str,
    path_var: &str,
) -> Result<String, RunError> {
    let fail = |reason: String| RunError::Entrypoint {
        program: program.to_string(),
        reason,
    };
    let check = |path: &str| -> Result<String, String> {
        let id = tree.resolve(path)?;
        let node = tree.node(id);
        match &node.kind {
            Kind::File { .. } if node.meta.mode & 0o111 != 0 => {
                Ok(format!("/{}", tree.path_of(id)))
            }
            Kind::File { .. } => Err(format!(
                "/{} is not executable (mode {:04o})",
                tree.path_of(id),
                node.meta.mode & 0o7777
            )),
            Kind::Dir { .. } => Err(format!("/{} is a directory", tree.path_of(id))),
            other => Err(format!(
                "/{} is a {}, not a program",
                tree.path_of(id),
                other.type_name()
            )),
        }
    };
    if program.contains('/') {
        let full = if program.starts_with('/') {
            program.to_string()
        } else {
            format!("{}/{program}", workdir.trim_end_matches('/'))
        };
        return check(&full).map_err(|e| fail(format!("{e} in the flist")));
    }
    let mut first_problem = None;
    for dir in path_var.split(':').filter(|d| d.starts_with('/')) {
        let candidate = format!("{}/{program}", dir.trim_end_matches('/'));
        match check(&candidate) {
            Ok(p) => return Ok(p),
            Err(e) if tree.resolve(&candidate).is_ok() => {
                first_problem.get_or_insert(e);
            }
            Err(_) => {}
        }
    }
    Err(fail(match first_problem {
        Some(p) => format!("{p} in the flist"),
        None => format!("not found in the flist's PATH ({path_var})"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flist_format::Meta;

    fn tree() -> Tree {
        let mut t = Tree::new(Meta::root(0o755, 1));
        let bin = t.mkdir_p("usr/bin", &Meta::root(0o755, 1)).unwrap();
        let file = |size| Kind::File {
            size,
            blocks: vec![],
        };
        t.insert(bin, "app", Meta::root(0o755, 1), file(3)).unwrap();
        t.insert(bin, "data", Meta::root(0o644, 1), file(3))
            .unwrap();
        let root = t.root();
        t.insert(
            root,
            "bin",
            Meta::root(0o777, 1),
            Kind::Symlink {
                target: "usr/bin".into(),
            },
        )
        .unwrap();
        t
    }

    #[test]
    fn programs_are_found_through_links_and_path() {
        let t = tree();
        assert_eq!(
            find_program(&t, "/bin/app", "/", DEFAULT_PATH).unwrap(),
            "/usr/bin/app"
        );
        assert_eq!(
            find_program(&t, "app", "/", "/nope:/bin").unwrap(),
            "/usr/bin/app"
        );
        assert_eq!(
            find_program(&t, "./app", "/usr/bin", DEFAULT_PATH).unwrap(),
            "/usr/bin/app"
        );
        let e = find_program(&t, "/bin/missing", "/", DEFAULT_PATH)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "entrypoint /bin/missing: /usr/bin/missing does not exist in the flist"
        );
        let e = find_program(&t, "/bin/data", "/", DEFAULT_PATH)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not executable (mode 0644)"), "{e}");
        let e = find_program(&t, "data", "/", "/bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not executable"), "{e}");
        let e = find_program(&t, "nope", "/", "/bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not found in the flist's PATH (/bin)"), "{e}");
        let e = find_program(&t, "/usr", "/", "/bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
    }

    #[test]
    fn metadata_then_startup_toml_then_overrides() {
        let mut md = Metadata::new();
        let toml = "[startup.entry]\nname = \"core.system\"\n\n[startup.entry.args]\nname = \"/bin/sh\"\nargs = [\"-c\", \"echo \\\"hi\\\"\"]\ndir = \"/srv\"\nenv = { \"A\" = \"1\" }\n";
        let e = Entrypoint::recorded(&md, Some(toml)).unwrap().unwrap();
        assert_eq!(e.argv, ["/bin/sh", "-c", "echo \"hi\""]);
        assert_eq!(e.workdir, "/srv");
        assert_eq!(e.env["A"], "1");
        assert_eq!(e.source, Source::StartupToml);
        // the table form of env
        let t2 = "[startup.entry.args]\nname = \"/x\"\n[startup.entry.args.env]\nB = \"2\"\n";
        assert_eq!(parse_startup_toml(t2).unwrap().unwrap().env["B"], "2");
        assert!(parse_startup_toml("[startup.entry.args]\nname = \"\"\n")
            .unwrap()
            .is_none());
        assert!(parse_startup_toml("not toml [").is_err());

        md.set_entrypoint(&["/bin/app".into(), "--serve".into()]);
        let mut env = IndexMap::new();
        env.insert("MODE".to_string(), "prod".to_string());
        md.set_environ(&env);
        md.set(KEY_WORKDIR, "/app");
        let e = Entrypoint::recorded(&md, Some(toml)).unwrap().unwrap();
        assert_eq!(e.argv, ["/bin/app", "--serve"]);
        assert_eq!(e.source, Source::Metadata);
        assert_eq!(e.workdir, "/app");

        let o = Entrypoint::with_overrides(
            Some(e.clone()),
            None,
            &[],
            &["MODE=dev".into(), "EXTRA=a=b".into()],
        )
        .unwrap();
        assert_eq!(o.argv, e.argv);
        assert_eq!(o.env["MODE"], "dev");
        assert_eq!(o.env["EXTRA"], "a=b");
        let o = Entrypoint::with_overrides(Some(e.clone()), None, &["ls".into(), "/".into()], &[])
            .unwrap();
        assert_eq!(o.argv, ["ls", "/"]);
        let o = Entrypoint::with_overrides(Some(e), Some("/bin/sh"), &["-x".into()], &[]).unwrap();
        assert_eq!(o.argv, ["/bin/sh", "-x"]);
        assert!(matches!(
            Entrypoint::with_overrides(None, None, &[], &[]),
            Err(RunError::NoEntrypoint)
        ));
        let env = o.process_env("box");
        assert!(env.contains(&("HOSTNAME".into(), "box".into())));
        assert!(env.iter().any(|(k, _)| k == "PATH"));
    }
}
