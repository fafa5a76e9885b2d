//! A real nginx in the foreground on a free loopback port, configured by the caller's
//! `http {}` contents (upstreams and servers): the load balancer of the cluster tests.
//!
//! ```no_run
//! let lb = test_support::nginx::Nginx::start(|port| format!(
//!     "upstream hubs {{ server 127.0.0.1:5555; }}\n\
//!      server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://hubs; }} }}"
//! ));
//! println!("{}", lb.url());
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::watched::Watched;

/// The nginx binary (`/usr/sbin/nginx` on Debian, else PATH).
pub fn binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

/// A running nginx; stopped (SIGQUIT, graceful) when dropped or when the test process
/// exits.
#[derive(Debug)]
pub struct Nginx {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<Watched>,
}

/// The full configuration around `http_body` (the inside of `http {}`), with every path
/// under `prefix`.
pub fn full_config(prefix: &Path, http_body: &str) -> String {
    let user = if nix::unistd::Uid::effective().is_root() {
        "user root;\n"
    } else {
        ""
    };
    format!(
        "{user}worker_processes 2;\ndaemon off;\npid {p}/nginx.pid;\n\
         error_log {p}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log {p}/access.log;\n\
         client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
         fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
         {http_body}\n}}\n",
        p = prefix.display()
    )
}

impl Nginx {
    /// Checks the configuration `http_body(port)` with `nginx -t`: `Err` with nginx's
    /// message when it is refused.
    pub fn check(http_body: impl FnOnce(u16) -> String) -> Result<(), String> {
        let dir = crate::server_dir("nginx-");
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, full_config(dir.path(), &http_body(1))).map_err(|e| e.to_string())?;
        let out = Command::new(binary())
            .arg("-t")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run nginx (apt-get install -y nginx): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Starts nginx with `http_body(port)` inside `http {}`, `port` being the free port it
    /// must listen on; waits until it accepts connections.
    pub fn start(http_body: impl FnOnce(u16) -> String) -> Nginx {
        let dir = crate::server_dir("nginx-");
        let port = crate::redis::free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, full_config(dir.path(), &http_body(port)))
            .expect("writing nginx.conf");
        let log = dir.path().join("stderr.log");
        let args = vec![
            "-p".to_owned(),
            dir.path().display().to_string(),
            "-c".to_owned(),
            conf.display().to_string(),
            "-e".to_owned(),
            dir.path().join("error.log").display().to_string(),
        ];
        let process = Watched::spawn(&binary(), &args, &log, "QUIT", |_| {})
            .expect("cannot run nginx (apt-get install -y nginx)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let err = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
                panic!("nginx did not start on port {port}: {err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            port,
            dir,
            process: Some(process),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            p.stop();
        }
    }
}
