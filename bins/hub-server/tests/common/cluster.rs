//! Helpers of the cluster tests (`cluster_*.rs`): uploads and listings over blocking HTTP,
//! authentication off (the `x-hub-user` header names the caller).

use test_support::HubProcess;

/// A `.tar.gz` of `etc/` holding `etc/content` = `content`.
pub fn tree(content: &[u8]) -> Vec<u8> {
    let tar = test_support::archive::RawTar::new()
        .dir("etc")
        .file("etc/content", content)
        .finish();
    test_support::archive::gzip(&tar)
}

/// `user` uploads `archive` as `name` to the hub at `base`.
pub fn upload(
    client: &reqwest::blocking::Client,
    base: &str,
    user: &str,
    name: &str,
    archive: Vec<u8>,
) -> reqwest::Result<reqwest::blocking::Response> {
    let part = reqwest::blocking::multipart::Part::bytes(archive).file_name(name.to_string());
    client
        .post(format!("{base}/api/flist/me/upload"))
        .header("x-hub-user", user)
        .multipart(reqwest::blocking::multipart::Form::new().part("file", part))
        .send()
}

/// `alice` uploads a tree holding `content` as `name`, which must be accepted.
pub fn upload_ok(base: &str, name: &str, content: &[u8]) {
    let r = upload(
        &reqwest::blocking::Client::new(),
        base,
        "alice",
        name,
        tree(content),
    )
    .expect("upload");
    assert_eq!(r.status(), 200, "{name}: {:?}", r.text());
}

/// The names `h` lists in `repo` (sorted; none when the repository does not exist).
pub fn names(h: &HubProcess, repo: &str) -> Vec<String> {
    let (status, body) = h.get(&format!("/api/flist/{repo}"));
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("listing");
    let mut n: Vec<String> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}
