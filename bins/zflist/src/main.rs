//! `zflist`: build, inspect, edit and check flists.
//!
//! This binary only parses arguments, runs the command and prints: the command line is
//! defined once, in `zflist_core::cli`. Session commands use the reference tool's syntax
//! (`zflist [temporary-point] <action> ...`, or `ZFLIST_MNT`); `ZFLIST_JSON=1` (or `--json`)
//! prints the reference's JSON envelope, `ZFLIST_PROGRESS=1` its progress lines; otherwise a
//! progress bar is drawn when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use zflist_core::cli::Cli;
use zflist_core::progress::{ProgressChoice, Reporter};
use zflist_core::{Progress, Response};

fn env_is_one(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

fn main() -> ExitCode {
    // `zflist run` starts this program again as the container's init (PID 1 of its
    // namespaces), which sets the container up and becomes the entrypoint.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == zflist_core::INIT_ARG)
    {
        zflist_core::container_init();
    }
    let json_env = env_is_one("ZFLIST_JSON");
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => return usage_error(e, json_env || std::env::args_os().any(|a| a == "--json")),
    };
    let json = json_env || cli.json;
    let reporter = Reporter::new(ProgressChoice::detect(
        env_is_one("ZFLIST_PROGRESS"),
        json,
        cli.quiet,
    ));
    let function = cli.function.clone();
    if function == "mount" {
        mount_log();
    }
    let result = cli.run(&reporter);
    reporter.finish("");
    finish(json, &function, result)
}

/// A mount serves reads for as long as it runs: what goes wrong meanwhile (the chunk store
/// stops answering, and when it answers again) is logged on stderr, at info level by
/// default (`RUST_LOG` overrides), without the FUSE library's notes about operations a
/// read-only file system leaves out.
fn mount_log() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fuser=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Help and version are printed by clap; any other parse error becomes one line (or the
/// JSON envelope) of the `usage` function.
fn usage_error(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind as K;
    if matches!(
        e.kind(),
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let rendered = e.render().to_string();
    // clap's message without its usage block, on one line
    let first = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string();
    let err = zflist_core::Error::usage("usage", format!("{first} (see zflist --help)"));
    finish(json, "usage", Err(err))
}

fn finish(json: bool, function: &str, result: zflist_core::Result<Response>) -> ExitCode {
    let failed = match &result {
        Ok(r) => r.failure.is_some(),
        Err(_) => true,
    };
    let mut out = std::io::stdout().lock();
    if json {
        let env = zflist_core::envelope(function, &result);
        let _ = writeln!(out, "{}", zflist_core::response::to_reference_json(&env));
    } else {
        match &result {
            Ok(r) => {
                let _ = out.write_all(r.text.as_bytes());
                let _ = out.flush();
                for n in &r.notes {
                    eprintln!("zflist: {function}: {}", zflist_core::display::escape(n));
                }
                if let Some(m) = &r.failure {
                    eprintln!("zflist: {function}: {m}");
                }
            }
            Err(e) => eprintln!("zflist: {}: {}", e.function, e.message()),
        }
    }
    let _ = out.flush();
    if let Some(code) = result.as_ref().ok().and_then(|r| r.exit_code) {
        return ExitCode::from(code);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
