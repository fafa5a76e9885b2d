//! The flist page of a 200,000-entry flist on the real `hub-server` process: answers in
//! under a second, and 50 parallel requests keep the server under 300 MB resident.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::big::{seed, vm_rss_kb};
use common::{free_port, BIN};

/// Kills the server when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flist_page_of_200000_entries_is_fast_and_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let d2 = data.clone();
    tokio::task::spawn_blocking(move || seed(&d2, false))
        .await
        .expect("seed");

    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hub-server");
    let server = Server(child);
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/api/repositories")).send().await {
            if r.status().is_success() {
                up = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "hub-server did not come up");
    let rss_idle = vm_rss_kb(pid);

    let page = format!("{base}/bigrepo/big.flist.md");
    let t = Instant::now();
    let r = client.get(&page).send().await.expect("page");
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("body");
    let first = t.elapsed();
    assert!(
        first < Duration::from_secs(1),
        "first answer took {first:?}"
    );
    assert!(body.contains("200000 files"), "counts on the page");
    assert!(body.contains("d099/"), "root directory listed");

    // A page deep inside the 100,000-entry directory.
    let t = Instant::now();
    let r = client
        .get(format!("{page}?dir=/big&page=400"))
        .send()
        .await
        .expect("deep page");
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("body");
    let deep = t.elapsed();
    assert!(deep < Duration::from_secs(1), "deep page took {deep:?}");
    assert!(body.contains("file-080000.dat") && body.contains("file-080199.dat"));
    assert!(!body.contains("file-080200.dat"), "one page only");

    // 50 at once, RSS sampled all along.
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(vm_rss_kb(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let t = Instant::now();
    let reqs = (0..50).map(|i| {
        let client = client.clone();
        let url = if i % 2 == 0 {
            page.clone()
        } else {
            format!("{page}?dir=/big&page={i}")
        };
        async move {
            let r = client.get(url).send().await.expect("request");
            let s = r.status().as_u16();
            let len = r.bytes().await.expect("body").len();
            (s, len)
        }
    });
    let results = futures::future::join_all(reqs).await;
    let all = t.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    peak.fetch_max(vm_rss_kb(pid), Ordering::Relaxed);
    for (s, len) in &results {
        assert_eq!(*s, 200, "every parallel request answered");
        assert!(*len > 10_000, "a full page");
    }
    let peak_mb = peak.load(Ordering::Relaxed) / 1024;
    eprintln!(
        "200k-entry flist page: first {first:?}, deep {deep:?}, 50 parallel in {all:?}; \
         RSS idle {} MB, peak {peak_mb} MB",
        rss_idle / 1024
    );
    assert!(peak_mb < 300, "server RSS peaked at {peak_mb} MB");
}
