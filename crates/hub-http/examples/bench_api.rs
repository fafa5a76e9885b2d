//! API benchmark driven by `cargo xtask bench api`: a hub with REPOS repositories × FLISTS
//! flists, loaded by `wrk -t2 -cCONNS` (keep-alive) for a fixed time per row, each row next
//! to nginx serving a file of the same size from disk in the same run, with the ratio and
//! the goals (PASS/FAIL):
//! - flist download (`/<repo>/<name>.flist`, names rotating over every repository and
//!   flist) vs nginx serving the same flist file: ≥ 0.6× nginx;
//! - `/api/flist/<repo>` (repositories rotating): ≥ 50,000 req/s and p99 < 5 ms;
//! - `/api/repositories` and `/api/flist/<repo>/<name>/light`: figures only.
//!
//! Usage: `bench_api [--repos N] [--flists N] [--secs S] [--conns C] [--router-only 1]`
//! (`--router-only 1`: the fast path off, every request through the router).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hub_http::HubConfig;
use hub_repo::{Actor, Hub};

struct Args {
    repos: usize,
    flists: usize,
    secs: u64,
    conns: usize,
    router_only: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        repos: 1000,
        flists: 20,
        secs: 10,
        conns: 32,
        router_only: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < argv.len() {
        let v = &argv[i + 1];
        match argv[i].as_str() {
            "--repos" => a.repos = v.parse().unwrap_or(a.repos),
            "--flists" => a.flists = v.parse().unwrap_or(a.flists),
            "--secs" => a.secs = v.parse().unwrap_or(a.secs),
            "--conns" => a.conns = v.parse().unwrap_or(a.conns),
            "--router-only" => a.router_only = v == "1" || v == "true",
            _ => {}
        }
        i += 2;
    }
    a
}

/// One `wrk` run.
#[derive(Clone, Copy, Default)]
struct Measure {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// `12.34us` / `1.2ms` / `1.00s` → milliseconds.
fn wrk_ms(v: &str) -> Option<f64> {
    for (unit, mul) in [("us", 0.001), ("ms", 1.0), ("m", 60_000.0), ("s", 1000.0)] {
        if let Some(n) = v.strip_suffix(unit) {
            return n.parse::<f64>().ok().map(|x| x * mul);
        }
    }
    None
}

/// Parses `wrk --latency` output.
fn parse_wrk(out: &str) -> Result<Measure, String> {
    let mut m = Measure::default();
    let mut seen_rps = false;
    for line in out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["Requests/sec:", v] => {
                m.rps = v.parse().map_err(|_| format!("bad rate {v}"))?;
                seen_rps = true;
            }
            ["50%", v] => m.p50_ms = wrk_ms(v).unwrap_or(f64::NAN),
            ["99%", v] => m.p99_ms = wrk_ms(v).unwrap_or(f64::NAN),
            ["Non-2xx", "or", "3xx", "responses:", n] => m.errors += n.parse().unwrap_or(1),
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                m.errors += rest
                    .iter()
                    .filter_map(|t| t.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if !seen_rps {
        return Err(format!("no Requests/sec in wrk output:\n{out}"));
    }
    Ok(m)
}

/// Runs `wrk` against `url` (with a Lua `script` choosing each request's path, if any).
fn wrk(url: &str, script: Option<&Path>, conns: usize, secs: u64) -> Result<Measure, String> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--latency",
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd
        .arg(url)
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// Writes a Lua script for wrk (each request takes the next path of a rotation, each thread
/// starting at a random place).
fn rotating_script(dir: &Path, name: &str, body: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, body)?;
    Ok(path)
}

/// nginx serving `root` on a free port, as a foreground process in `dir`.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path, root: &Path) -> Result<Nginx, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).map_err(|e| e.to_string())?;
        let user = if nix_is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}worker_processes auto;\ndaemon off;\npid {p}/nginx.pid;\n\
             error_log {p}/logs/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n\
               keepalive_requests 10000000;\n  keepalive_timeout 120s;\n\
               default_type application/octet-stream;\n\
               client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
               fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n",
            p = prefix.display(),
            root = root.display(),
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or("nginx");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting nginx: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("nginx did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Nginx { child, port })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

fn main() -> BoxResult<()> {
    let args = parse_args();
    for tool in ["wrk", "nginx"] {
        let found = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .chain([PathBuf::from("/usr/sbin")])
                    .any(|d| d.join(tool).is_file())
            })
            .unwrap_or(false);
        if !found {
            return Err(format!("{tool} is not installed (apt-get install {tool})").into());
        }
    }
    let dir = tempfile::tempdir()?;
    let mut cfg = HubConfig {
        data_dir: dir.path().join("data"),
        ..HubConfig::default()
    };
    cfg.public_backend = "zdb://hub.example.org:9900/public".into();

    // Populate: one flist file shared by every entry (content-addressed), one transaction.
    let t0 = Instant::now();
    let hub = Hub::open(&cfg.data_dir)?;
    let fixture = test_support::fixture("fixture.flist");
    let staged = hub.catalog().stage_reader(std::fs::File::open(&fixture)?)?;
    let fl = hub_repo::inspect::open_flist(staged.path())?;
    let info = hub_repo::inspect::info_of(&fl, Some("bench".into()));
    let mut targets = Vec::with_capacity(args.repos * args.flists);
    for r in 0..args.repos {
        for f in 0..args.flists {
            targets.push((format!("repo{r:04}"), format!("app-{f:02}.flist")));
        }
    }
    hub.catalog()
        .put_flist_many(&Actor::system("bench"), &targets, staged, info)?;
    let sha = hub
        .catalog()
        .resolve("repo0000", "app-00.flist")?
        .sha256
        .to_string();
    let blob = hub.catalog().blob_path(&sha);
    drop(hub);
    eprintln!(
        "populated {} repositories x {} flists in {:.1}s",
        args.repos,
        args.flists,
        t0.elapsed().as_secs_f64()
    );

    // The hub in this process (tokio's default: one worker per core); wrk and nginx are
    // separate processes on the same cores.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let server = server_rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        BoxResult::Ok(hub_http::start_on(l, cfg).await?)
    })?;
    let base = format!("http://{}", server.addr);
    if args.router_only {
        server.state.fastpath.set_enabled(false);
        eprintln!("fast path off: every request goes through the router");
    }

    // nginx's document root: the same flist file, and files of the same size as the API
    // answers.
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::copy(&blob, www.join("same.flist"))?;
    let nginx = Nginx::start(dir.path(), &www)?;
    let nbase = format!("http://127.0.0.1:{}", nginx.port);

    let get = |path: &str| -> BoxResult<Vec<u8>> {
        let mut s = std::net::TcpStream::connect(server.addr)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut buf)?;
        let at = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no HTTP header end")?;
        if !buf.starts_with(b"HTTP/1.1 200") {
            return Err(format!("GET {path}: {}", String::from_utf8_lossy(&buf[..at])).into());
        }
        Ok(buf[at + 4..].to_vec())
    };

    let (repos, flists) = (args.repos, args.flists);
    let dl_script = rotating_script(
        dir.path(),
        "download.lua",
        &format!(
            "local i = 0\n\
             function setup(thread) thread:set(\"i0\", math.random(0, {n})) end\n\
             function init(a) i = tonumber(i0) or 0 end\n\
             function request()\n  i = i + 1\n  local k = i % {n}\n\
               return wrk.format(\"GET\", string.format(\"/repo%04d/app-%02d.flist\", math.floor(k / {flists}), k % {flists}))\nend\n",
            n = repos * flists,
        ),
    )?;
    let repo_script = rotating_script(
        dir.path(),
        "repo.lua",
        &format!(
            "local i = 0\n\
             function setup(thread) thread:set(\"i0\", math.random(0, {repos})) end\n\
             function init(a) i = tonumber(i0) or 0 end\n\
             function request()\n  i = i + 1\n\
               return wrk.format(\"GET\", string.format(\"/api/flist/repo%04d\", i % {repos}))\nend\n"
        ),
    )?;
    let mid = format!("repo{:04}", repos / 2);
    let f = format!("app-{:02}.flist", flists / 2);
    struct Row {
        label: &'static str,
        sample: String,
        script: Option<PathBuf>,
        static_name: String,
    }
    let rows = [
        Row {
            label: "flist download",
            sample: format!("/{mid}/{f}"),
            script: Some(dl_script),
            static_name: "same.flist".into(),
        },
        Row {
            label: "/api/flist/<repo>",
            sample: format!("/api/flist/{mid}"),
            script: Some(repo_script),
            static_name: "same-size-repo.json".into(),
        },
        Row {
            label: "/api/repositories",
            sample: "/api/repositories".into(),
            script: None,
            static_name: "same-size-repositories.json".into(),
        },
        Row {
            label: "light",
            sample: format!("/api/flist/{mid}/{f}/light"),
            script: None,
            static_name: "same-size-light.json".into(),
        },
    ];

    println!(
        "wrk -t2 -c{} keep-alive, {} s per measure; {} repositories x {} flists; hub and nginx on the same {} cores",
        args.conns,
        args.secs,
        repos,
        flists,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "| {:<18} | {:>7} | {:>9} | {:>7} | {:>7} | {:>11} | {:>7} | {:>6} | {:<36} |",
        "row", "bytes", "hub r/s", "p50 ms", "p99 ms", "nginx r/s", "p99 ms", "ratio", "goal"
    );
    println!(
        "|{:-<20}|{:->9}|{:->11}|{:->9}|{:->9}|{:->13}|{:->9}|{:->8}|{:-<38}|",
        "", "", "", "", "", "", "", "", ""
    );
    let mut failed = 0;
    for row in &rows {
        let body = get(&row.sample)?;
        if row.static_name != "same.flist" {
            std::fs::write(www.join(&row.static_name), vec![b'x'; body.len()])?;
        }
        // Warm-up (fills the hub's caches and the page cache), then hub and nginx.
        let _ = wrk(
            &format!("{base}{}", row.sample),
            row.script.as_deref(),
            args.conns,
            1,
        )?;
        let hub_m = wrk(
            &format!("{base}{}", row.sample),
            row.script.as_deref(),
            args.conns,
            args.secs,
        )?;
        let ng = wrk(
            &format!("{nbase}/{}", row.static_name),
            None,
            args.conns,
            args.secs,
        )?;
        let ratio = hub_m.rps / ng.rps.max(1.0);
        let goal = match row.label {
            "flist download" => {
                let ok = ratio >= 0.6 && hub_m.errors == 0;
                failed += usize::from(!ok);
                format!(">= 0.6x nginx: {}", verdict(ok))
            }
            "/api/flist/<repo>" => {
                let ok = hub_m.rps >= 50_000.0 && hub_m.p99_ms < 5.0 && hub_m.errors == 0;
                failed += usize::from(!ok);
                format!(">= 50,000 r/s, p99 < 5 ms: {}", verdict(ok))
            }
            _ => "(figures only)".into(),
        };
        println!(
            "| {:<18} | {:>7} | {:>9.0} | {:>7.2} | {:>7.2} | {:>11.0} | {:>7.2} | {:>5.2}x | {:<36} |{}",
            row.label,
            body.len(),
            hub_m.rps,
            hub_m.p50_ms,
            hub_m.p99_ms,
            ng.rps,
            ng.p99_ms,
            ratio,
            goal,
            if hub_m.errors + ng.errors > 0 {
                format!(" ({} errors)", hub_m.errors + ng.errors)
            } else {
                String::new()
            }
        );
    }
    drop(nginx);
    server_rt.block_on(server.shutdown())?;
    println!(
        "{}",
        if failed == 0 {
            "all goals met".to_string()
        } else {
            format!("{failed} goal(s) missed")
        }
    );
    Ok(())
}

/// Any error.
type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
