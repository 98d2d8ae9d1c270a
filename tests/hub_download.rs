//! Hub downloads (issue 10): the `detox` binary against a small hub on 127.0.0.1 started by each
//! test, serving the t5-tiny fixture as huggingface.co does (`HEAD`/`GET
//! /{org}/{name}/resolve/{rev}/{file}`, etag + x-repo-commit, safetensors through a redirect to
//! a "CDN" path that honours `Range`). The standard cache layout, a second run from the cache with
//! the server gone, `HF_HUB_OFFLINE`, timeouts on a server that never answers, 404s, and bodies
//! cut short once (resumed) or always (fails, nothing taken as complete).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::fixtures;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const MODEL: &str = "org/t5-tiny";
const TOKEN: &str = "hf_testtoken";

/// How the test hub misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    /// Accepts connections and never answers (all requests, or those for this file).
    Stall(Option<&'static str>),
    /// The first body of model.safetensors stops halfway.
    TruncateOnce,
    /// Every body of model.safetensors stops after at most 1000 bytes.
    TruncateAlways,
    /// The first request is answered 503 (overloaded).
    BusyOnce,
}

/// One request the hub got: method, path, `Range` and `Authorization` headers.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

struct State {
    /// `org/name` → file → bytes.
    repos: HashMap<String, HashMap<String, Vec<u8>>>,
    mode: Mode,
    once: AtomicBool,
    seen: Mutex<Vec<Seen>>,
    addr: String,
}

struct Hub {
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Hub {
    fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            repos: repos(),
            mode,
            once: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
            addr,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(&st, conn));
            }
        });
        Self {
            state,
            stop,
            accept: Some(accept),
        }
    }

    fn endpoint(&self) -> &str {
        &self.state.addr
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Closes the listening socket (nothing answers on its port afterwards).
    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.state.addr.trim_start_matches("http://"));
        if let Some(h) = self.accept.take() {
            h.join().unwrap();
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `org/t5-tiny` (the fixture), `org/noweights` (its config only).
fn repos() -> HashMap<String, HashMap<String, Vec<u8>>> {
    let dir = fixtures().join("t5-tiny");
    let mut model = HashMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        model.insert(name, std::fs::read(&path).unwrap());
    }
    let config_only = HashMap::from([("config.json".to_string(), model["config.json"].clone())]);
    HashMap::from([
        (MODEL.to_string(), model),
        ("org/noweights".to_string(), config_only),
    ])
}

/// A stable etag of some bytes (FNV-1a, hex).
fn etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn is_lfs(file: &str) -> bool {
    file.ends_with(".safetensors")
}

/// Reads one request head: method, path, headers (lower-case names).
fn read_request(conn: &TcpStream) -> Option<(String, String, HashMap<String, String>)> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some((method, path, headers))
}

fn serve(st: &State, mut conn: TcpStream) {
    let Some((method, path, headers)) = read_request(&conn) else {
        return;
    };
    st.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        auth: headers.get("authorization").cloned(),
    });
    if st.mode == Mode::BusyOnce && !st.once.swap(true, Ordering::SeqCst) {
        return respond(&mut conn, "503 Service Unavailable", &[], b"");
    }
    if let Mode::Stall(which) = st.mode {
        if which.is_none_or(|f| path.ends_with(&format!("/{f}"))) {
            // Never answer: hold the connection until the client gives up.
            let _ = conn.read(&mut [0u8; 1]);
            return;
        }
    }
    if let Some(rest) = path.strip_prefix("/cdn/") {
        return serve_cdn(st, &mut conn, rest, headers.get("range"));
    }
    let Some((repo, file)) = parse_resolve(&path) else {
        return respond(&mut conn, "404 Not Found", &[], b"");
    };
    let Some(bytes) = st.repos.get(&repo).and_then(|r| r.get(&file)) else {
        let hdr = [("x-error-code", "EntryNotFound".to_string())];
        return respond(&mut conn, "404 Not Found", &hdr, b"");
    };
    let commit = ("x-repo-commit", COMMIT.to_string());
    if is_lfs(&file) {
        let hdr = [
            commit,
            ("x-linked-etag", format!("\"{}\"", etag(bytes))),
            ("x-linked-size", bytes.len().to_string()),
            ("location", format!("{}/cdn/{repo}/{file}", st.addr)),
        ];
        return respond(&mut conn, "302 Found", &hdr, b"");
    }
    // Plain git files: a strong etag for config.json, a weak one for the others.
    let tag = match file.as_str() {
        "config.json" => format!("\"{}\"", etag(bytes)),
        _ => format!("W/\"{}\"", etag(bytes)),
    };
    let body: &[u8] = if method == "HEAD" { b"" } else { bytes };
    let hdr = [
        commit,
        ("etag", tag),
        ("content-length", bytes.len().to_string()),
    ];
    respond(&mut conn, "200 OK", &hdr, body);
}

/// `/{org}/{name}/resolve/{rev}/{file}` → (`org/name`, file).
fn parse_resolve(path: &str) -> Option<(String, String)> {
    let mut parts = path.trim_start_matches('/').splitn(5, '/');
    let (org, name, resolve, _rev, file) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (resolve == "resolve").then(|| (format!("{org}/{name}"), file.to_string()))
}

/// The bytes of an LFS file, honouring `Range: bytes=a-b` / `bytes=a-` (206 + Content-Range),
/// cut short as the mode says.
fn serve_cdn(st: &State, conn: &mut TcpStream, rest: &str, range: Option<&String>) {
    let (repo, file) = rest.rsplit_once('/').unwrap();
    let bytes = &st.repos[repo][file];
    let n = bytes.len();
    let (start, end) = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            (
                a.parse().unwrap(),
                b.parse().map_or(n - 1, |e: usize| e.min(n - 1)),
            )
        })
        .unwrap_or((0, n - 1));
    let len = (end + 1 - start).to_string();
    let mut hdr = vec![
        ("content-length", len),
        ("accept-ranges", "bytes".to_string()),
    ];
    let status = if range.is_some() {
        hdr.push(("content-range", format!("bytes {start}-{end}/{n}")));
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let body = &bytes[start..=end];
    let cut = match st.mode {
        Mode::TruncateOnce if !st.once.swap(true, Ordering::SeqCst) => body.len() / 2,
        Mode::TruncateAlways => body.len().min(1000),
        _ => body.len(),
    };
    respond(conn, status, &hdr, &body[..cut]);
}

fn respond(conn: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    if !headers.iter().any(|(k, _)| *k == "content-length") {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// A temp `HF_HOME` of its own, with a token file.
fn hf_home(tag: &str) -> PathBuf {
    let home = common::scratch_dir("detox-hub-download", tag);
    std::fs::write(home.join("token"), TOKEN).unwrap();
    home
}

/// `detox inspect --model id --json` with `HF_HOME` and `HF_ENDPOINT` set, the other hub and
/// proxy settings cleared, then `env` added.
fn inspect(home: &Path, endpoint: &str, id: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_detox"));
    cmd.args(["inspect", "--model", id, "--json"]);
    for var in [
        "HF_HUB_OFFLINE",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "HF_HUB_DOWNLOAD_TIMEOUT",
        "HF_HUB_ETAG_TIMEOUT",
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HF_HOME", home).env("HF_ENDPOINT", endpoint);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("runs")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"model_type\":\"t5\""), "{stdout}");
}

/// The stderr of a run that must fail with one `error:` line, exit 1 and no panic.
fn one_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn repo_dir(home: &Path) -> PathBuf {
    home.join("hub/models--org--t5-tiny")
}

fn fixture(file: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("t5-tiny").join(file)).unwrap()
}

/// The snapshot entry of `file` is a relative symlink to `blobs/<etag>`, which holds its bytes.
fn assert_cached(home: &Path, file: &str) {
    let bytes = fixture(file);
    let pointer = repo_dir(home).join("snapshots").join(COMMIT).join(file);
    let target = std::fs::read_link(&pointer).unwrap();
    assert_eq!(target, Path::new("../../blobs").join(etag(&bytes)));
    assert!(
        std::fs::read(&pointer).unwrap() == bytes,
        "{file}: bytes differ"
    );
}

fn blob_names(home: &Path) -> Vec<String> {
    std::fs::read_dir(repo_dir(home).join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn downloads_into_the_standard_cache_layout() {
    let hub = Hub::start(Mode::Normal);
    let home = hf_home("full");
    ok(&inspect(&home, hub.endpoint(), MODEL, &[]));
    let repo = repo_dir(&home);
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert_cached(&home, file);
    }
    assert!(!repo
        .join("snapshots")
        .join(COMMIT)
        .join("tokenizer_config.json")
        .exists());
    assert!(
        blob_names(&home).iter().all(|b| !b.contains('.')),
        "{:?}",
        blob_names(&home)
    );
    let seen = hub.seen();
    assert!(
        seen.iter()
            .all(|s| s.auth.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "{seen:?}"
    );
    // Files after the first are asked for at the commit of the first.
    assert!(
        seen.iter()
            .any(|s| s.path.contains(&format!("/resolve/{COMMIT}/"))),
        "{seen:?}"
    );
}

#[test]
fn second_run_uses_the_cache_with_the_server_gone() {
    let hub = Hub::start(Mode::Normal);
    let endpoint = hub.endpoint().to_string();
    let home = hf_home("cached");
    ok(&inspect(&home, &endpoint, MODEL, &[]));
    hub.stop();
    ok(&inspect(&home, &endpoint, MODEL, &[]));
    ok(&inspect(
        &home,
        &endpoint,
        MODEL,
        &[("HF_HUB_OFFLINE", "1")],
    ));
    // HF_HUB_CACHE names the cache root directly.
    let other = hf_home("cached-other");
    let cache = common::arg(&home.join("hub"));
    ok(&inspect(
        &other,
        &endpoint,
        MODEL,
        &[("HF_HUB_CACHE", &cache), ("HF_HUB_OFFLINE", "1")],
    ));
    let err = one_error(&inspect(
        &other,
        &endpoint,
        MODEL,
        &[("HF_HUB_OFFLINE", "1")],
    ));
    assert!(
        err.contains("`org/t5-tiny`") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
}

/// A run against a hub that never answers fails with one line naming the file, the endpoint and
/// the timeout's variable, after its retries (4 tries of 1 s plus 3.5 s of backoff).
fn assert_times_out(mode: Mode, file: &str, env: &[(&str, &str)], var: &str) {
    let hub = Hub::start(mode);
    let home = hf_home(&format!("stall-{file}-{var}"));
    let started = Instant::now();
    let out = inspect(&home, hub.endpoint(), MODEL, env);
    let took = started.elapsed();
    let err = one_error(&out);
    let want = format!(
        "cannot download `{file}` of `{MODEL}` from {}: no answer within 1 s ({var})",
        hub.endpoint()
    );
    assert!(err.contains(&want), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(took >= Duration::from_secs(4), "no retries? took {took:?}");
}

#[test]
fn stalled_server_times_out_with_one_error_line() {
    let env = [("HF_HUB_DOWNLOAD_TIMEOUT", "1")];
    assert_times_out(
        Mode::Stall(None),
        "config.json",
        &env,
        "HF_HUB_DOWNLOAD_TIMEOUT",
    );
}

#[test]
fn stalled_metadata_request_names_the_etag_timeout() {
    let env = [("HF_HUB_ETAG_TIMEOUT", "1")];
    assert_times_out(
        Mode::Stall(None),
        "config.json",
        &env,
        "HF_HUB_ETAG_TIMEOUT",
    );
}

#[test]
fn stalled_optional_tokenizer_file_is_an_error() {
    let env = [("HF_HUB_DOWNLOAD_TIMEOUT", "1")];
    let mode = Mode::Stall(Some("tokenizer.json"));
    assert_times_out(mode, "tokenizer.json", &env, "HF_HUB_DOWNLOAD_TIMEOUT");
}

#[test]
fn busy_hub_is_retried() {
    let hub = Hub::start(Mode::BusyOnce);
    let home = hf_home("busy");
    ok(&inspect(&home, hub.endpoint(), MODEL, &[]));
    assert_cached(&home, "config.json");
    let seen = hub.seen();
    let heads = seen
        .iter()
        .filter(|s| s.method == "HEAD" && s.path.ends_with("/config.json"))
        .count();
    assert_eq!(heads, 2, "a 503, then the retry: {seen:?}");
}

#[test]
fn bad_timeout_setting_is_one_error() {
    let home = hf_home("bad-timeout");
    let out = inspect(
        &home,
        "http://127.0.0.1:9",
        MODEL,
        &[("HF_HUB_DOWNLOAD_TIMEOUT", "soon")],
    );
    let err = one_error(&out);
    assert!(
        err.contains("HF_HUB_DOWNLOAD_TIMEOUT") && err.contains("`soon`"),
        "{err}"
    );
}

#[test]
fn missing_model_or_weights_is_one_not_found_error() {
    let hub = Hub::start(Mode::Normal);
    let home = hf_home("missing");
    let err = one_error(&inspect(&home, hub.endpoint(), "org/missing", &[]));
    let want = format!(
        "`config.json` of `org/missing` from {}: not found on the hub",
        hub.endpoint()
    );
    assert!(err.contains(&want), "{err}");
    let err = one_error(&inspect(&home, hub.endpoint(), "org/noweights", &[]));
    assert!(
        err.contains("`model.safetensors` of `org/noweights`")
            && err.contains("not found on the hub"),
        "{err}"
    );
    // 404s are not retried: one HEAD for config.json of the missing model.
    let seen = hub.seen();
    let missing: Vec<_> = seen
        .iter()
        .filter(|s| s.path.contains("org/missing"))
        .collect();
    assert!(
        missing.len() == 1 && missing[0].method == "HEAD",
        "{missing:?}"
    );
}

#[test]
fn truncated_body_is_resumed_with_a_range_request() {
    let hub = Hub::start(Mode::TruncateOnce);
    let home = hf_home("truncated-once");
    ok(&inspect(&home, hub.endpoint(), MODEL, &[]));
    assert_cached(&home, "model.safetensors");
    let half = fixture("model.safetensors").len() / 2;
    let resumed = hub.seen().iter().any(|s| {
        s.path.starts_with("/cdn/") && s.range.as_deref() == Some(&format!("bytes={half}-"))
    });
    assert!(resumed, "{:?}", hub.seen());
}

#[test]
fn always_truncated_body_fails_and_nothing_is_taken_as_complete() {
    let hub = Hub::start(Mode::TruncateAlways);
    let home = hf_home("truncated-always");
    let err = one_error(&inspect(&home, hub.endpoint(), MODEL, &[]));
    assert!(
        err.contains("`model.safetensors` of `org/t5-tiny`") && err.contains("ended after"),
        "{err}"
    );
    let weights = fixture("model.safetensors");
    let blob = etag(&weights);
    assert!(
        !blob_names(&home).contains(&blob),
        "{:?}",
        blob_names(&home)
    );
    let snapshot = repo_dir(&home).join("snapshots").join(COMMIT);
    assert!(!snapshot.join("model.safetensors").exists());
    let err = one_error(&inspect(
        &home,
        hub.endpoint(),
        MODEL,
        &[("HF_HUB_OFFLINE", "1")],
    ));
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    // A later run against a working hub resumes the partial blob and completes it.
    let good = Hub::start(Mode::Normal);
    ok(&inspect(&home, good.endpoint(), MODEL, &[]));
    assert_cached(&home, "model.safetensors");
    let resumed = good
        .seen()
        .iter()
        .any(|s| s.path.starts_with("/cdn/") && s.range.is_some());
    assert!(resumed, "{:?}", good.seen());
}
