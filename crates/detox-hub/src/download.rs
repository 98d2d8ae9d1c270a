//! Hub downloads into the standard Hugging Face cache, with timeouts, retries and resume (the
//! client of `hf-hub` 0.4 has no timeout, no retry and trusts a short body).
//!
//! The layout is the one `huggingface_hub` and `hf-hub` read and write: under the cache root
//! (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`),
//! `models--org--name/blobs/<etag>` holds the bytes, `snapshots/<commit>/<file>` is a relative
//! symlink to its blob and `refs/main` holds the commit. A blob is written as
//! `<etag>.incomplete` (resumed with a `Range` request after a cut) and renamed once it has the
//! announced size, under the lock `huggingface_hub` takes (`.locks/models--org--name/<etag>.lock`).
//!
//! Settings, as `huggingface_hub` names them: `HF_ENDPOINT`, `HF_HUB_DOWNLOAD_TIMEOUT` (seconds,
//! default 30: connect and each read), `HF_HUB_ETAG_TIMEOUT` (the metadata request; defaults to
//! the download timeout), `HF_HUB_OFFLINE`, `HF_TOKEN` (else the `HF_HOME/token` file).

use std::cell::OnceCell;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use hf_hub::{Cache, Repo};

use crate::HubError;

const REVISION: &str = "main";
const DEFAULT_TIMEOUT_S: f64 = 30.0;
/// Waits before the 1st, 2nd and 3rd retry of a transient failure.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
/// Files at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

/// A per-request timeout and the variable that sets it (named when it expires).
#[derive(Clone, Copy, Debug)]
struct Timeout {
    after: Duration,
    var: &'static str,
}

/// What one request can end in, short of success; `transient` ones are retried.
#[derive(Debug)]
enum Failure {
    Timeout(Timeout),
    Network(String),
    Truncated { got: u64, want: u64 },
    Status(u16),
    Bad(String),
    Io(PathBuf, std::io::Error),
}

impl Failure {
    fn transient(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Network(_) | Self::Truncated { .. } => true,
            Self::Status(code) => matches!(code, 408 | 429 | 500..=599),
            Self::Bad(_) | Self::Io(..) => false,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Timeout(t) => format!(
                "no answer within {} s ({})",
                t.after.as_secs_f64(),
                t.var
            ),
            Self::Network(msg) | Self::Bad(msg) => msg.clone(),
            Self::Truncated { got, want } => {
                format!("the body ended after {got} of {want} bytes")
            }
            Self::Status(404) => "not found on the hub (404)".into(),
            Self::Status(401) => "not found on the hub, or private or gated and no token with access (401; set HF_TOKEN or log in)".into(),
            Self::Status(403) => "access denied (403; a gated model needs its terms accepted and HF_TOKEN set)".into(),
            Self::Status(code) => format!("the hub answered HTTP {code}"),
            Self::Io(path, e) => format!("{}: {e}", path.display()),
        }
    }
}

/// Where a file is fetched from and what it will be stored as.
struct Meta {
    url: String,
    etag: String,
    commit: String,
    size: Option<u64>,
}

/// One model repository on one hub endpoint, with the settings of the environment.
pub struct Hub {
    id: String,
    endpoint: String,
    cache_root: PathBuf,
    repo: Repo,
    token: Option<String>,
    offline: bool,
    etag_timeout: Timeout,
    download_timeout: Timeout,
    head: ureq::Agent,
    get: ureq::Agent,
    /// The commit of the first file fetched: the others are asked for at that commit, so that
    /// all land in one snapshot even when the branch moves meanwhile.
    commit: OnceCell<String>,
}

impl Hub {
    /// `id` on `HF_ENDPOINT` (default the Hugging Face hub) with the cache and timeouts of the
    /// environment; a malformed setting is an error naming the variable.
    pub fn from_env(id: &str) -> Result<Self, HubError> {
        let download_timeout = timeout_var("HF_HUB_DOWNLOAD_TIMEOUT")?.unwrap_or(Timeout {
            after: Duration::from_secs_f64(DEFAULT_TIMEOUT_S),
            var: "HF_HUB_DOWNLOAD_TIMEOUT",
        });
        let etag_timeout = timeout_var("HF_HUB_ETAG_TIMEOUT")?.unwrap_or(download_timeout);
        let hf_home = hf_home()?;
        let cache_root = env_nonempty("HF_HUB_CACHE")
            .or_else(|| env_nonempty("HUGGINGFACE_HUB_CACHE"))
            .map_or_else(|| hf_home.join("hub"), PathBuf::from);
        let endpoint = env_nonempty("HF_ENDPOINT")
            .unwrap_or_else(|| "https://huggingface.co".into())
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            id: id.to_string(),
            endpoint,
            cache_root,
            repo: Repo::model(id.to_string()),
            token: env_nonempty("HF_TOKEN").or_else(|| Cache::new(hf_home.join("hub")).token()),
            offline: env_nonempty("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v)),
            etag_timeout,
            download_timeout,
            head: agent(etag_timeout, 0),
            get: agent(download_timeout, 5),
            commit: OnceCell::new(),
        })
    }

    /// Whether `HF_HUB_OFFLINE` is set: only the cache may be used.
    pub fn offline(&self) -> bool {
        self.offline
    }

    /// `file` in the cached snapshot of `main`, if it is there (no network).
    pub fn cached(&self, file: &str) -> Option<PathBuf> {
        Cache::new(self.cache_root.clone())
            .repo(self.repo.clone())
            .get(file)
    }

    /// `file` of the repository, downloaded into the cache; not on the hub is an error.
    pub fn fetch(&self, file: &str) -> Result<PathBuf, HubError> {
        self.fetch_optional(file)?
            .ok_or_else(|| self.error(file, Failure::Status(404).message()))
    }

    /// [`Self::fetch`] where a file the hub does not have (404) is `None`; any other failure
    /// (a timeout included) is an error.
    pub fn fetch_optional(&self, file: &str) -> Result<Option<PathBuf>, HubError> {
        check_file_name(file).map_err(|msg| self.error(file, msg))?;
        let Some(meta) = self.retrying(file, || self.metadata(file))? else {
            return Ok(None);
        };
        let blob = self.repo_dir().join("blobs").join(&meta.etag);
        if !blob.is_file() {
            self.download_blob(file, &meta, &blob)?;
        }
        let pointer = self.link(file, &meta)?;
        self.commit.get_or_init(|| meta.commit.clone());
        Ok(Some(pointer))
    }

    /// A failure to get `file`, naming the repository and the endpoint.
    pub fn error(&self, file: &str, msg: impl Into<String>) -> HubError {
        HubError::Download {
            id: self.id.clone(),
            file: file.to_string(),
            endpoint: self.endpoint.clone(),
            msg: msg.into(),
        }
    }

    /// The model is not (completely) in the cache and `HF_HUB_OFFLINE` forbids the network.
    pub fn not_cached(&self) -> HubError {
        HubError::Offline {
            id: self.id.clone(),
            cache: self.cache_root.clone(),
        }
    }

    fn repo_dir(&self) -> PathBuf {
        self.cache_root.join(self.repo.folder_name())
    }

    fn url(&self, file: &str) -> String {
        let revision = self.commit.get().map_or(REVISION, String::as_str);
        format!("{}/{}/resolve/{revision}/{file}", self.endpoint, self.id)
    }

    fn request(&self, agent: &ureq::Agent, method: &str, url: &str) -> ureq::Request {
        let req = agent
            .request(method, url)
            .set("Accept-Encoding", "identity");
        match &self.token {
            Some(token) => req.set("Authorization", &format!("Bearer {token}")),
            None => req,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or failed transiently
    /// `BACKOFF.len() + 1` times (waiting `BACKOFF` in between).
    fn retrying<T>(
        &self,
        file: &str,
        mut attempt: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T, HubError> {
        let mut tries = 0;
        loop {
            match attempt() {
                Ok(v) => return Ok(v),
                Err(f) if f.transient() && tries < BACKOFF.len() => {
                    std::thread::sleep(BACKOFF[tries]);
                    tries += 1;
                }
                Err(Failure::Io(path, e)) => return Err(HubError::io(&path, e)),
                Err(f) if tries == 0 => return Err(self.error(file, f.message())),
                Err(f) => {
                    let msg = format!("{}; gave up after {} tries", f.message(), tries + 1);
                    return Err(self.error(file, msg));
                }
            }
        }
    }

    /// The etag, commit and size of `file` (a `HEAD` request; relative redirects, as from a
    /// renamed repository, are followed, one to another host is where the bytes are); `None` on 404.
    fn metadata(&self, file: &str) -> Result<Option<Meta>, Failure> {
        let mut url = self.url(file);
        for _ in 0..10 {
            let resp = match self.request(&self.head, "HEAD", &url).call() {
                Ok(resp) => resp,
                Err(ureq::Error::Status(404, _)) => return Ok(None),
                Err(e) => return Err(failure(e, self.etag_timeout)),
            };
            match resp
                .header("location")
                .filter(|_| is_redirect(resp.status()))
            {
                Some(loc) if is_relative(loc) => url = join(&url, loc),
                _ => return meta_of(&resp, url).map(Some),
            }
        }
        Err(Failure::Bad("more than 10 redirects".into()))
    }

    /// Downloads the blob of `meta` (to `<blob>.incomplete`, then renamed) under its lock.
    fn download_blob(&self, file: &str, meta: &Meta, blob: &Path) -> Result<(), HubError> {
        let _lock = self.lock(&meta.etag)?;
        let dir = blob.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| HubError::io(dir, e))?;
        if blob.is_file() {
            return Ok(()); // another process finished it while we waited
        }
        let mut part = blob.as_os_str().to_owned();
        part.push(".incomplete");
        let part = PathBuf::from(part);
        self.retrying(file, || self.fetch_body(file, meta, &part))?;
        std::fs::rename(&part, blob).map_err(|e| HubError::io(blob, e))
    }

    /// One `GET` of the bytes `part` does not have yet (`Range: bytes=N-`), appended to it;
    /// `Ok` once it has all of them.
    fn fetch_body(&self, file: &str, meta: &Meta, part: &Path) -> Result<(), Failure> {
        let have = part_len(part, meta.size)?;
        if have > 0 && Some(have) == meta.size {
            return Ok(());
        }
        let mut req = self.request(&self.get, "GET", &meta.url);
        if have > 0 {
            req = req.set("Range", &format!("bytes={have}-"));
        }
        let resp = req.call().map_err(|e| failure(e, self.download_timeout))?;
        let (start, total) = body_span(&resp, have)?;
        let size = match (meta.size, total) {
            (Some(a), Some(b)) if a != b => {
                return Err(Failure::Bad(format!(
                    "the hub announced {a} bytes, the download has {b}"
                )))
            }
            (a, b) => a.or(b),
        };
        let mut out = open_part(part, start)?;
        let bar = progress(file, size, start);
        let (copied, err) = copy(resp.into_reader(), &mut out, &bar);
        bar.finish_and_clear();
        out.sync_all()
            .map_err(|e| Failure::Io(part.to_path_buf(), e))?;
        body_outcome(start + copied, size, err, self.download_timeout)
    }

    /// The snapshot entry of `file`: a relative symlink to the blob (a copy where symlinks are
    /// not allowed), replacing any earlier one at once; then `refs/main` names the commit.
    fn link(&self, file: &str, meta: &Meta) -> Result<PathBuf, HubError> {
        let pointer = self
            .repo_dir()
            .join("snapshots")
            .join(&meta.commit)
            .join(file);
        let parent = pointer.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        let depth = Path::new(file).components().count() + 1;
        let target = format!("{}blobs/{}", "../".repeat(depth), meta.etag);
        let tmp = crate::atomic::sibling(&pointer, "link");
        let _ = std::fs::remove_file(&tmp);
        symlink_or_copy(
            &target,
            &tmp,
            &self.repo_dir().join("blobs").join(&meta.etag),
        )
        .map_err(|e| HubError::io(&tmp, e))?;
        std::fs::rename(&tmp, &pointer).map_err(|e| HubError::io(&pointer, e))?;
        self.write_ref(&meta.commit)?;
        Ok(pointer)
    }

    /// `refs/main` holding `commit` (temp file + rename).
    fn write_ref(&self, commit: &str) -> Result<(), HubError> {
        let path = self.repo_dir().join("refs").join(REVISION);
        if std::fs::read_to_string(&path).is_ok_and(|c| c == commit) {
            return Ok(());
        }
        let parent = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        crate::atomic::write_file_atomic(&path, commit.as_bytes())
            .map_err(|e| HubError::io(&path, e))
    }

    /// The exclusive lock of one blob (released when the file is dropped), where
    /// `huggingface_hub` takes it too.
    fn lock(&self, etag: &str) -> Result<std::fs::File, HubError> {
        let dir = self.cache_root.join(".locks").join(self.repo.folder_name());
        std::fs::create_dir_all(&dir).map_err(|e| HubError::io(&dir, e))?;
        let path = dir.join(format!("{etag}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| HubError::io(&path, e))?;
        fs4::FileExt::lock(&file).map_err(|e| HubError::io(&path, e))?;
        Ok(file)
    }
}

fn agent(t: Timeout, redirects: u32) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(t.after)
        .timeout_read(t.after)
        .timeout_write(t.after)
        .redirects(redirects)
        .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
        .try_proxy_from_env(true)
        .user_agent(concat!("detox/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// `huggingface_hub`'s truth values.
fn is_true(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

/// A timeout in seconds from `var`, if set.
fn timeout_var(var: &'static str) -> Result<Option<Timeout>, HubError> {
    let Some(v) = env_nonempty(var) else {
        return Ok(None);
    };
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Some(Timeout {
            after: Duration::from_secs_f64(s),
            var,
        })),
        _ => Err(HubError::Setting {
            var,
            msg: format!("expected a positive number of seconds, got `{v}`"),
        }),
    }
}

/// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
fn hf_home() -> Result<PathBuf, HubError> {
    if let Some(home) = env_nonempty("HF_HOME") {
        return Ok(home.into());
    }
    if let Some(xdg) = env_nonempty("XDG_CACHE_HOME") {
        return Ok(Path::new(&xdg).join("huggingface"));
    }
    env_nonempty("HOME")
        .or_else(|| env_nonempty("USERPROFILE"))
        .map(|home| Path::new(&home).join(".cache").join("huggingface"))
        .ok_or(HubError::Setting {
            var: "HF_HOME",
            msg: "not set, and no home directory to put the Hugging Face cache in".into(),
        })
}

/// A repository file name that stays inside the snapshot (shard names come from the hub).
fn check_file_name(file: &str) -> Result<(), String> {
    let ok = !file.is_empty()
        && !file.contains('\\')
        && Path::new(file)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err("not a file name inside the repository".into())
    }
}

/// An etag or commit the hub sent, usable as a file name.
fn check_name(what: &str, v: &str) -> Result<(), Failure> {
    let ok = !v.is_empty()
        && !v.starts_with('.')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Failure::Bad(format!(
            "the hub sent an unusable {what} `{v}`"
        )))
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

fn is_relative(location: &str) -> bool {
    !location.contains("://") && !location.starts_with("//")
}

/// `location` (a relative reference) resolved against `url`.
fn join(url: &str, location: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path_at = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    if location.starts_with('/') {
        return format!("{}{location}", &url[..path_at]);
    }
    let dir_end = url
        .rfind('/')
        .filter(|&i| i >= path_at)
        .map_or(url.len(), |i| i + 1);
    format!("{}{location}", &url[..dir_end])
}

/// The metadata in the headers of the final answer to the `HEAD` request (`x-linked-*` ones
/// for a file stored on LFS, whose answer is a redirect to where its bytes are).
fn meta_of(resp: &ureq::Response, url: String) -> Result<Meta, Failure> {
    let etag = resp
        .header("x-linked-etag")
        .or_else(|| resp.header("etag"))
        .ok_or_else(|| missing_header("etag"))?;
    let etag = etag
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string();
    let commit = resp
        .header("x-repo-commit")
        .ok_or_else(|| missing_header("x-repo-commit"))?
        .trim()
        .to_string();
    check_name("etag", &etag)?;
    check_name("commit", &commit)?;
    let size = resp.header("x-linked-size").or_else(|| {
        (resp.status() == 200)
            .then(|| resp.header("content-length"))
            .flatten()
    });
    let size = size.and_then(|s| s.trim().parse().ok());
    Ok(Meta {
        url,
        etag,
        commit,
        size,
    })
}

fn missing_header(name: &str) -> Failure {
    Failure::Bad(format!(
        "the answer has no `{name}` header (is HF_ENDPOINT a Hugging Face hub?)"
    ))
}

fn failure(e: ureq::Error, t: Timeout) -> Failure {
    match e {
        ureq::Error::Status(code, _) => Failure::Status(code),
        ureq::Error::Transport(tr) => {
            let io =
                std::error::Error::source(&tr).and_then(|s| s.downcast_ref::<std::io::Error>());
            if io.is_some_and(timed_out) {
                return Failure::Timeout(t);
            }
            let mut msg = tr.kind().to_string();
            for part in [tr.message().map(str::to_string), io.map(|e| e.to_string())] {
                msg.extend(part.map(|p| format!(": {p}")));
            }
            match tr.kind() {
                ureq::ErrorKind::InvalidUrl
                | ureq::ErrorKind::UnknownScheme
                | ureq::ErrorKind::InvalidProxyUrl
                | ureq::ErrorKind::InsecureRequestHttpsOnly => Failure::Bad(msg),
                _ => Failure::Network(msg),
            }
        }
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// The length of a partial download worth resuming (0 when there is none, or when it is longer
/// than the file and so not a prefix of it).
fn part_len(part: &Path, size: Option<u64>) -> Result<u64, Failure> {
    match std::fs::metadata(part) {
        Ok(m) if size.is_some_and(|s| m.len() > s) => Ok(0),
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Failure::Io(part.to_path_buf(), e)),
    }
}

/// Where the body starts in the file and the file's size, from a 200 (the whole file: a server
/// that ignores `Range`) or a 206 (`Content-Range: bytes a-b/total`, `a` must be `have`).
fn body_span(resp: &ureq::Response, have: u64) -> Result<(u64, Option<u64>), Failure> {
    let length = resp
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if resp.status() != 206 {
        return Ok((0, length));
    }
    let range = resp.header("content-range").unwrap_or("");
    let parsed = range.trim().strip_prefix("bytes ").and_then(|r| {
        let (span, total) = r.split_once('/')?;
        let start = span.split_once('-')?.0.trim().parse::<u64>().ok()?;
        Some((start, total.trim().parse::<u64>().ok()))
    });
    match parsed {
        Some((start, total)) if start == have => Ok((start, total.or(length.map(|l| l + start)))),
        _ => Err(Failure::Bad(format!(
            "asked for bytes {have}- and got `Content-Range: {range}`"
        ))),
    }
}

/// `part` opened to write from `start` on (emptied when `start` is 0).
fn open_part(part: &Path, start: u64) -> Result<std::fs::File, Failure> {
    let mut opts = std::fs::OpenOptions::new();
    if start == 0 {
        opts.write(true).create(true).truncate(true);
    } else {
        opts.append(true);
    }
    opts.open(part)
        .map_err(|e| Failure::Io(part.to_path_buf(), e))
}

/// Copies `body` to `out` until its end or the first error: the bytes copied, and that error.
fn copy(
    mut body: impl Read,
    out: &mut std::fs::File,
    bar: &indicatif::ProgressBar,
) -> (u64, Option<std::io::Error>) {
    let mut buf = vec![0u8; 1 << 16];
    let mut copied = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return (copied, None),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return (copied, Some(e)),
        };
        if let Err(e) = out.write_all(&buf[..n]) {
            return (
                copied,
                Some(std::io::Error::other(format!("writing the download: {e}"))),
            );
        }
        copied += n as u64;
        bar.inc(n as u64);
    }
}

/// Whether a body that ended at `got` bytes (with `err`, if it broke off) completes the file.
fn body_outcome(
    got: u64,
    size: Option<u64>,
    err: Option<std::io::Error>,
    t: Timeout,
) -> Result<(), Failure> {
    match (err, size) {
        (Some(e), _) if timed_out(&e) => Err(Failure::Timeout(t)),
        (Some(e), Some(want)) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
            Err(Failure::Network(format!("{e} after {got} of {want} bytes")))
        }
        (Some(e), None) => Err(Failure::Network(format!("{e} after {got} bytes"))),
        (_, Some(want)) if got != want => Err(Failure::Truncated { got, want }),
        _ => Ok(()),
    }
}

/// A progress bar for a large download (drawn only on a terminal).
fn progress(file: &str, size: Option<u64>, start: u64) -> indicatif::ProgressBar {
    match size {
        Some(size) if size >= PROGRESS_MIN_BYTES => {
            let bar = indicatif::ProgressBar::new(size).with_message(file.to_string());
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_position(start);
            bar
        }
        _ => indicatif::ProgressBar::hidden(),
    }
}

#[cfg(unix)]
fn symlink_or_copy(target: &str, link: &Path, _blob: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink_or_copy(target: &str, link: &Path, blob: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target.replace('/', "\\"), link)
        .or_else(|_| std::fs::copy(blob, link).map(|_| ()))
}

#[cfg(not(any(unix, windows)))]
fn symlink_or_copy(_target: &str, link: &Path, blob: &Path) -> std::io::Result<()> {
    std::fs::copy(blob, link).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_relative_redirects() {
        let url = "http://h:1/org/a/resolve/main/config.json";
        assert_eq!(
            join(url, "/org/b/resolve/main/config.json"),
            "http://h:1/org/b/resolve/main/config.json"
        );
        assert_eq!(
            join(url, "other.json"),
            "http://h:1/org/a/resolve/main/other.json"
        );
        assert!(is_relative("/x") && !is_relative("https://cdn/x") && !is_relative("//cdn/x"));
    }

    #[test]
    fn file_names_stay_inside_the_snapshot() {
        assert!(check_file_name("model-00001-of-00002.safetensors").is_ok());
        assert!(check_file_name("sub/model.safetensors").is_ok());
        for bad in ["", "../x", "/etc/passwd", "a/../../x", "a\\b", "./x"] {
            assert!(check_file_name(bad).is_err(), "{bad}");
        }
        assert!(check_name("etag", "abc123").is_ok());
        assert!(check_name("etag", "a/b").is_err() && check_name("etag", "..").is_err());
    }

    #[test]
    fn transient_failures_are_the_retried_ones() {
        assert!(Failure::Status(503).transient() && Failure::Status(429).transient());
        assert!(!Failure::Status(404).transient() && !Failure::Status(401).transient());
        assert!(Failure::Truncated { got: 1, want: 2 }.transient());
        assert!(!Failure::Bad("x".into()).transient());
    }

    /// https needs ureq's rustls backend (the `tls` feature): without it the handshake is never
    /// tried and the error is `UnknownScheme`.
    #[test]
    fn https_has_a_tls_backend() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || drop(listener.accept()));
        let t = Timeout {
            after: Duration::from_secs(5),
            var: "HF_HUB_DOWNLOAD_TIMEOUT",
        };
        let err = agent(t, 0).get(&url).call().unwrap_err();
        server.join().unwrap();
        let ureq::Error::Transport(tr) = err else {
            panic!("{err}")
        };
        assert_ne!(tr.kind(), ureq::ErrorKind::UnknownScheme, "{tr}");
    }

    #[test]
    fn a_short_body_is_truncated_and_a_full_one_complete() {
        let t = Timeout {
            after: Duration::from_secs(1),
            var: "HF_HUB_DOWNLOAD_TIMEOUT",
        };
        assert!(body_outcome(10, Some(10), None, t).is_ok());
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert!(matches!(
            body_outcome(4, Some(10), Some(eof), t),
            Err(Failure::Truncated { got: 4, want: 10 })
        ));
        assert!(matches!(
            body_outcome(4, Some(10), None, t),
            Err(Failure::Truncated { .. })
        ));
        let slow = std::io::Error::from(std::io::ErrorKind::WouldBlock);
        assert!(matches!(
            body_outcome(4, Some(10), Some(slow), t),
            Err(Failure::Timeout(_))
        ));
    }
}
