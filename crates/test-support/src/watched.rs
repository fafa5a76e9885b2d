//! Server processes that never outlive the test process.
//!
//! A server shared by a whole test binary lives in a `static`, whose destructor never runs.
//! So each server is started by a small `sh` watchdog holding the read end of a pipe from
//! the test process: when the test process exits (normally, by a panic or killed), the
//! pipe closes and the watchdog stops the server with the signal chosen for it (SIGINT
//! for PostgreSQL's fast shutdown; SIGKILL for servers whose data is thrown away anyway).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The watchdog: starts `"$@"` in the background with its output appended to `$LOG`,
/// prints its pid, then reads until end of input and stops it with `$SIG`.
const WATCHDOG: &str = r#""$@" </dev/null >>"$LOG" 2>&1 &
pid=$!
echo "$pid"
while read -r _; do :; done
kill -s "$SIG" "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0"#;

/// A server process started under the watchdog.
#[derive(Debug)]
pub struct Watched {
    watchdog: Child,
    stdin: Option<ChildStdin>,
    pid: i32,
}

impl Watched {
    /// Starts `program args...` (with the environment, directory and user already set on
    /// `cmd`'s builder through `setup`), output appended to `log`; `stop` is the signal
    /// name the watchdog sends at the end (`INT`, `TERM`, `KILL`).
    pub fn spawn(
        program: &Path,
        args: &[String],
        log: &Path,
        stop: &str,
        setup: impl FnOnce(&mut Command),
    ) -> std::io::Result<Watched> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(program)
            .args(args)
            .env("LOG", log)
            .env("SIG", stop)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        setup(&mut cmd);
        let mut watchdog = cmd.spawn()?;
        let stdout = watchdog
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout from the watchdog"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let pid: i32 = line.trim().parse().map_err(|_| {
            std::io::Error::other(format!("the watchdog printed {line:?}, not a pid"))
        })?;
        Ok(Watched {
            stdin: watchdog.stdin.take(),
            watchdog,
            pid,
        })
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.pid), signal);
    }

    /// Stops the server with the watchdog's signal and waits for both to exit.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        drop(self.stdin.take());
        let _ = self.watchdog.wait();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
