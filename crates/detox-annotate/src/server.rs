//! The web server (axum on tokio): routes, the access token, security headers, and starting /
//! stopping. Database work runs on tokio's blocking threads behind one connection, so writes
//! are serialized and each is committed before its answer is sent.
//!
//! Routes: `GET /` (name form), `POST /start`, `GET /rate/{name}` (the next page: the one shown
//! before and not submitted, or a new one), `POST /rate/{name}` (store, then 303 to the next),
//! `GET /app.css`, `GET /app.js`.
//!
//! Access: on a loopback address no token is needed unless one is given, and the `Host` header
//! must name the loopback (so a web page cannot reach the app through DNS rebinding). Bound
//! elsewhere, every request carries the shared token: `?token=` (the address printed at start;
//! it then sets an HttpOnly, SameSite=Strict cookie), the `detox_token` cookie, or an
//! `X-Detox-Token` header. Forms carry a per-page token that only the page itself knows, so
//! another site cannot submit ratings through an annotator's browser.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::rejection::FormRejection;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};

use crate::db::{Db, Outcome};
use crate::error::AnnotateError;
use crate::form::{check_name, parse_submission};
use crate::items::Item;
use crate::pages;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Each item goes to at least this many annotators before any item goes to more.
    pub overlap: usize,
    /// The shared token every request must carry (`None`: none needed; only on loopback).
    pub token: Option<String>,
}

#[derive(Clone)]
struct AppState {
    db: Arc<Mutex<Db>>,
    cfg: Arc<ServerConfig>,
    total: usize,
    /// Bound to a loopback address: `Host` must be a loopback name.
    loopback: bool,
}

/// The app on an open database.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(start_page))
        .route("/start", axum::routing::post(start))
        .route("/rate/{name}", get(rate_get).post(rate_post))
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", pages::STYLE) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", pages::SCRIPT) }),
        )
        .fallback(|| async { html(StatusCode::NOT_FOUND, pages::error_page("no such page")) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Checks the access token and the Host, and adds the security headers to every answer.
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if st.loopback && !host_is_loopback(req.headers()) {
        return secure(html(
            StatusCode::FORBIDDEN,
            pages::error_page("this server answers only to 127.0.0.1, localhost or [::1]"),
        ));
    }
    let mut set_cookie = None;
    if let Some(token) = &st.cfg.token {
        let from_query = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(str::to_string)
        });
        let from_cookie = cookie(req.headers(), "detox_token");
        let from_header = req
            .headers()
            .get("x-detox-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let ok = |t: &Option<String>| t.as_deref().is_some_and(|t| same(t, token));
        if ok(&from_query) {
            set_cookie = Some(format!(
                "detox_token={token}; Path=/; HttpOnly; SameSite=Strict"
            ));
        } else if !ok(&from_cookie) && !ok(&from_header) {
            return secure(html(
                StatusCode::FORBIDDEN,
                pages::error_page(
                    "this server needs its access token: open the address it printed at start (…/?token=…)",
                ),
            ));
        }
    }
    let mut res = next.run(req).await;
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    secure(res)
}

fn secure(mut res: Response) -> Response {
    let h = res.headers_mut();
    for (k, v) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    res
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

fn host_is_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}

async fn start_page() -> Response {
    html(StatusCode::OK, pages::start_page(None))
}

async fn start(form: Result<Form<Vec<(String, String)>>, FormRejection>) -> Response {
    let name = match &form {
        Ok(Form(pairs)) => pairs
            .iter()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.trim().to_string()),
        Err(_) => None,
    };
    let Some(name) = name else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::start_page(Some("the form has no `name` field")),
        );
    };
    match check_name(&name) {
        Ok(()) => Redirect::to(&format!("/rate/{name}")).into_response(),
        Err(e) => html(StatusCode::BAD_REQUEST, pages::start_page(Some(&e))),
    }
}

/// Runs `f` on the database on a blocking thread.
async fn with_db<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&mut Db) -> Result<T, AnnotateError> + Send + 'static,
) -> Result<T, Response> {
    let db = st.db.clone();
    let res = tokio::task::spawn_blocking(move || {
        let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut db)
    })
    .await;
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            eprintln!("detox annotate: {e}");
            Err(html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::error_page(&format!("the database failed: {e}")),
            ))
        }
        Err(e) => Err(html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::error_page(&format!("internal error: {e}")),
        )),
    }
}

async fn rate_get(State(st): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    if let Err(e) = check_name(&name) {
        return html(StatusCode::BAD_REQUEST, pages::start_page(Some(&e)));
    }
    render_next(&st, name, None, StatusCode::OK).await
}

async fn render_next(
    st: &AppState,
    name: String,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let overlap = st.cfg.overlap;
    let total = st.total;
    let who = name.clone();
    let res = with_db(st, move |db| {
        let page = db.next_page(&who, overlap, &mut rand::rng())?;
        let done = db.judged_by(&who)?;
        Ok((page, done))
    })
    .await;
    match res {
        Ok((Some(page), done)) => html(
            status,
            pages::rate_page(&name, &page, done, total, error.as_deref()),
        ),
        Ok((None, done)) => html(status, pages::done_page(&name, done, total)),
        Err(r) => r,
    }
}

async fn rate_post(
    State(st): State<AppState>,
    UrlPath(name): UrlPath<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(e) = check_name(&name) {
        return html(StatusCode::BAD_REQUEST, pages::error_page(&e));
    }
    let pairs = match form {
        Ok(Form(p)) => p,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::error_page(&format!(
                    "the form could not be read ({e}); expected application/x-www-form-urlencoded"
                )),
            )
        }
    };
    let sub = match parse_submission(&pairs) {
        Ok(s) => s,
        Err(e) => return html(StatusCode::BAD_REQUEST, pages::error_page(&e)),
    };
    let who = name.clone();
    match with_db(&st, move |db| db.submit(&who, &sub)).await {
        Ok(Ok(Outcome::Stored | Outcome::AlreadyStored)) => {
            Redirect::to(&format!("/rate/{name}")).into_response()
        }
        Ok(Err(rejected)) => html(StatusCode::BAD_REQUEST, pages::error_page(&rejected.0)),
        Err(r) => r,
    }
}

/// Serves `db` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    db: Db,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AnnotateError> {
    let addr = listener
        .local_addr()
        .map_err(|e| AnnotateError::Server(format!("cannot read the bound address: {e}")))?;
    if cfg.token.is_none() && !addr.ip().is_loopback() {
        return Err(AnnotateError::Server(format!(
            "{addr} is not a loopback address: a token is required"
        )));
    }
    let total = db.item_count()?;
    let state = AppState {
        db: Arc::new(Mutex::new(db)),
        cfg: Arc::new(cfg),
        total,
        loopback: addr.ip().is_loopback(),
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| AnnotateError::Server(format!("serving on {addr}: {e}")))
}

/// Serves `db` on `bind` until Ctrl-C or SIGTERM (requests in flight finish first);
/// `ready` is told the bound address (port 0 picks a free one) once it listens.
pub fn serve_until_signal(
    bind: SocketAddr,
    db: Db,
    cfg: ServerConfig,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), AnnotateError> {
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| AnnotateError::Server(format!("cannot listen on {bind}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| AnnotateError::Server(e.to_string()))?;
        ready(addr);
        serve(listener, db, cfg, stop_signal()).await
    })
}

/// Resolves on Ctrl-C, or on SIGTERM where there are signals.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

/// A server running on its own thread (tests, the load benchmark): stopped on drop.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), AnnotateError>>>,
}

impl RunningServer {
    /// Opens `db_path` for `items` and serves it on `bind` (port 0: any free port).
    pub fn start(
        db_path: &Path,
        items: &[Item],
        bind: SocketAddr,
        cfg: ServerConfig,
    ) -> Result<RunningServer, AnnotateError> {
        let db = Db::open_for_items(db_path, items)?;
        let rt = runtime()?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(bind))
            .map_err(|e| AnnotateError::Server(format!("cannot listen on {bind}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| AnnotateError::Server(e.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(serve(listener, db, cfg, async {
                let _ = rx.await;
            }))
        });
        Ok(RunningServer {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) -> Result<(), AnnotateError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), AnnotateError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(AnnotateError::Server("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A multi-threaded tokio runtime.
pub fn runtime() -> Result<tokio::runtime::Runtime, AnnotateError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| AnnotateError::Server(format!("cannot start the async runtime: {e}")))
}

/// An exclusive lock on `DB.lock` beside the database while a server uses it: one server per
/// database. Released when the file is dropped or the process dies.
pub fn lock_db(db_path: &Path) -> Result<std::fs::File, AnnotateError> {
    let lock: PathBuf = {
        let mut s = db_path.as_os_str().to_owned();
        s.push(".lock");
        s.into()
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|e| AnnotateError::io(&lock, e))?;
    match fs4::FileExt::try_lock(&f) {
        Ok(()) => Ok(f),
        Err(fs4::TryLockError::WouldBlock) => Err(AnnotateError::db(
            db_path,
            "another `detox annotate` is serving this database (its .lock is held)",
        )),
        Err(fs4::TryLockError::Error(e)) => Err(AnnotateError::io(&lock, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognized() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(v).unwrap());
            host_is_loopback(&m)
        };
        assert!(h("127.0.0.1:8080") && h("localhost:1") && h("[::1]:80") && h("localhost"));
        assert!(!h("evil.example:8080") && !h("127.0.0.1.evil.example") && !h("[::2]:80"));
        assert!(!host_is_loopback(&HeaderMap::new()));
    }

    #[test]
    fn cookies_and_tokens() {
        let mut m = HeaderMap::new();
        m.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; detox_token=xyz"),
        );
        assert_eq!(cookie(&m, "detox_token").as_deref(), Some("xyz"));
        assert_eq!(cookie(&m, "b"), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
