//! HTTP tests against the real server on 127.0.0.1 (a free port) with a real SQLite file:
//! rating, resume, overlap, idempotent double submits, forged and malformed posts, escaping,
//! the Host check, the access token, concurrent annotators and a restart that keeps every
//! acknowledged judgment.

use std::net::SocketAddr;
use std::path::PathBuf;

use detox_annotate::{export_jsonl, Db, Item, RunningServer, ServerConfig};

fn items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| Item {
            id: format!("it{i}"),
            dialogue: format!("#Person1#: hello {i}\n#Person2#: bye {i}"),
            reference: Some(format!("ref {i}")),
            models: ["base".into(), "tuned".into()],
            summaries: [format!("alpha text {i}"), format!("beta text {i}")],
        })
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("detox-annotate-http-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("ratings.sqlite")
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn start(
    db: &std::path::Path,
    items: &[Item],
    overlap: usize,
    token: Option<&str>,
) -> RunningServer {
    RunningServer::start(
        db,
        items,
        local(),
        ServerConfig {
            overlap,
            token: token.map(str::to_string),
        },
    )
    .unwrap()
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

/// Status and body, for successes and HTTP errors alike.
fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, String, Option<String>) {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let location = resp.header("location").map(str::to_string);
    (status, resp.into_string().unwrap(), location)
}

fn get(s: &RunningServer, path: &str) -> (u16, String) {
    let (st, body, _) = answer(agent().get(&format!("http://{}{path}", s.addr)).call());
    (st, body)
}

/// The hidden page token of a rating page.
fn page_token(html: &str) -> String {
    let at = html.find("name=\"page\" value=\"").expect("a rating page") + 19;
    html[at..at + 32].to_string()
}

fn progress(html: &str) -> String {
    let at = html.find("id=\"progress\">").unwrap() + 14;
    html[at..].split('<').next().unwrap().to_string()
}

fn rating_form<'a>(token: &'a str, preferred: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("page", token),
        ("preferred", preferred),
        ("confidence", "2"),
        ("left_readability", "6"),
        ("left_coherence", "5"),
        ("right_readability", "3"),
        ("right_coherence", "2"),
        ("note", "a note"),
    ]
}

fn post(s: &RunningServer, who: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
    answer(
        agent()
            .post(&format!("http://{}/rate/{who}", s.addr))
            .send_form(form),
    )
}

/// Rates the page `who` is shown now; returns the page's token.
fn rate_next(s: &RunningServer, who: &str, preferred: &str) -> Option<String> {
    let (st, html) = get(s, &format!("/rate/{who}"));
    assert_eq!(st, 200, "{html}");
    if html.contains("id=\"done\"") {
        return None;
    }
    let token = page_token(&html);
    let (st, body, loc) = post(s, who, &rating_form(&token, preferred));
    assert_eq!(st, 303, "{body}");
    assert_eq!(loc.as_deref(), Some(format!("/rate/{who}").as_str()));
    Some(token)
}

fn exported(db: &std::path::Path) -> Vec<serde_json::Value> {
    let db = Db::open_existing(db).unwrap();
    let (text, n) = export_jsonl(&db).unwrap();
    let v: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), n);
    v
}

#[test]
fn an_annotator_rates_resumes_and_finishes() {
    let db = scratch("rate");
    let s = start(&db, &items(3), 2, None);
    let (st, home) = get(&s, "/");
    assert_eq!(st, 200);
    assert!(home.contains("action=\"/start\""));
    let (st, _, loc) = answer(
        agent()
            .post(&format!("http://{}/start", s.addr))
            .send_form(&[("name", "ann")]),
    );
    assert_eq!((st, loc.as_deref()), (303, Some("/rate/ann")));

    // the page comes back unchanged until it is submitted (closing the browser resumes)
    let (_, first) = get(&s, "/rate/ann");
    let (_, again) = get(&s, "/rate/ann");
    assert_eq!(page_token(&first), page_token(&again));
    assert_eq!(progress(&first), "0 / 3");
    assert!(
        !first.contains("base") && !first.contains("tuned"),
        "model names stay hidden"
    );

    rate_next(&s, "ann", "left").unwrap();
    let (_, second) = get(&s, "/rate/ann");
    assert_eq!(progress(&second), "1 / 3");
    assert_ne!(page_token(&second), page_token(&first));
    rate_next(&s, "ann", "tie").unwrap();
    rate_next(&s, "ann", "right").unwrap();
    assert!(rate_next(&s, "ann", "tie").is_none());
    let (_, done) = get(&s, "/rate/ann");
    assert!(done.contains("3 / 3"));
    s.stop().unwrap();

    let rows = exported(&db);
    assert_eq!(rows.len(), 3);
    let ids: Vec<&str> = rows.iter().map(|r| r["item"].as_str().unwrap()).collect();
    assert_eq!(ids, ["it0", "it1", "it2"]);
    // "left" was preferred on the first page: the model shown on the left
    assert_eq!(rows[0]["preferred"], rows[0]["shown"][0]);
    assert_eq!(rows[1]["preferred"], "tie");
    assert_eq!(rows[2]["preferred"], rows[2]["shown"][1]);
    let left = rows[0]["shown"][0].as_str().unwrap();
    assert_eq!(rows[0]["ratings"][left]["readability"], 6);
    assert_eq!(rows[0]["models"], serde_json::json!(["base", "tuned"]));
    assert_eq!(rows[0]["note"], "a note");
    assert!(rows[0]["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn double_submits_are_stored_once_and_forged_posts_get_400() {
    let db = scratch("double");
    let s = start(&db, &items(2), 2, None);
    let (_, html) = get(&s, "/rate/ann");
    let token = page_token(&html);
    assert_eq!(post(&s, "ann", &rating_form(&token, "left")).0, 303);
    assert_eq!(post(&s, "ann", &rating_form(&token, "right")).0, 303);

    let forged = "f".repeat(32);
    let (st, body, _) = post(&s, "ann", &rating_form(&forged, "left"));
    assert_eq!(st, 400);
    assert!(body.contains("not one this server issued"), "{body}");
    // another annotator's page
    let (st, body, _) = post(&s, "bob", &rating_form(&token, "left"));
    assert_eq!(st, 400);
    assert!(body.contains("another annotator"), "{body}");
    // malformed fields, unknown fields, a bad name, a body that is not a form
    let (_, html) = get(&s, "/rate/ann");
    let t2 = page_token(&html);
    let mut bad = rating_form(&t2, "left");
    bad[2] = ("confidence", "9");
    let (st, body, _) = post(&s, "ann", &bad);
    assert_eq!(st, 400);
    assert!(body.contains("`confidence` is `9`"), "{body}");
    let mut extra = rating_form(&t2, "left");
    extra.push(("models", "base"));
    assert_eq!(post(&s, "ann", &extra).0, 400);
    assert_eq!(post(&s, "a%20b", &rating_form(&t2, "left")).0, 400);
    let (st, _, _) = answer(
        agent()
            .post(&format!("http://{}/rate/ann", s.addr))
            .set("Content-Type", "application/json")
            .send_string("{}"),
    );
    assert_eq!(st, 400);
    s.stop().unwrap();
    let rows = exported(&db);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["preferred"], rows[0]["shown"][0],
        "the first submit is kept"
    );
}

#[test]
fn overlap_gives_each_item_to_two_annotators_first() {
    let db = scratch("overlap");
    let s = start(&db, &items(3), 2, None);
    for who in ["ann", "bob", "cy", "dee"] {
        rate_next(&s, who, "tie").unwrap();
    }
    s.stop().unwrap();
    let rows = exported(&db);
    let ids: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["annotator"].as_str().unwrap(),
                r["item"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("ann", "it0"),
            ("bob", "it0"),
            ("cy", "it1"),
            ("dee", "it1")
        ]
    );
}

#[test]
fn texts_are_escaped_and_security_headers_sent() {
    let db = scratch("escape");
    let mut its = items(1);
    its[0].summaries[0] = "<script>alert('x')</script>".into();
    its[0].dialogue = "<img src=x onerror=alert(1)>".into();
    let s = start(&db, &its, 2, None);
    let resp = agent()
        .get(&format!("http://{}/rate/ann", s.addr))
        .call()
        .unwrap();
    let csp = resp.header("content-security-policy").unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(resp.header("x-frame-options"), Some("DENY"));
    let html = resp.into_string().unwrap();
    assert!(!html.contains("<script>alert") && !html.contains("<img src=x"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    // a page reached through another host name (DNS rebinding) is refused
    let (st, _, _) = answer(
        agent()
            .get(&format!("http://{}/", s.addr))
            .set("Host", "evil.example")
            .call(),
    );
    assert_eq!(st, 403);
}

#[test]
fn with_a_token_every_request_must_carry_it() {
    let db = scratch("token");
    let s = start(&db, &items(1), 2, Some("s3cret"));
    assert_eq!(get(&s, "/").0, 403);
    assert_eq!(get(&s, "/?token=wrong").0, 403);
    let resp = agent()
        .get(&format!("http://{}/?token=s3cret", s.addr))
        .call()
        .unwrap();
    let cookie = resp.header("set-cookie").unwrap().to_string();
    assert!(cookie.starts_with("detox_token=s3cret") && cookie.contains("SameSite=Strict"));
    let (st, _, _) = answer(
        agent()
            .get(&format!("http://{}/rate/ann", s.addr))
            .set("Cookie", "detox_token=s3cret")
            .call(),
    );
    assert_eq!(st, 200);
    let (st, _, _) = answer(
        agent()
            .get(&format!("http://{}/rate/ann", s.addr))
            .set("X-Detox-Token", "s3cret")
            .call(),
    );
    assert_eq!(st, 200);
}

#[test]
fn concurrent_annotators_lose_nothing_and_a_restart_keeps_everything() {
    let db = scratch("concurrent");
    let s = start(&db, &items(6), 2, None);
    std::thread::scope(|sc| {
        for k in 0..8 {
            let s = &s;
            sc.spawn(move || {
                let who = format!("ann{k}");
                let mut n = 0;
                while rate_next(s, &who, ["left", "right", "tie"][n % 3]).is_some() {
                    n += 1;
                }
                assert_eq!(n, 6);
            });
        }
    });
    s.stop().unwrap();
    let rows = exported(&db);
    assert_eq!(rows.len(), 48);
    let mut pairs: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r["annotator"].to_string(), r["item"].to_string()))
        .collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), 48, "no judgment twice");

    // a new server on the same database: everything is there, everyone is done
    let s = start(&db, &items(6), 2, None);
    let (_, html) = get(&s, "/rate/ann3");
    assert!(html.contains("id=\"done\"") && html.contains("6 / 6"));
    s.stop().unwrap();
    // other items for the same database are refused
    let err = RunningServer::start(
        &db,
        &items(5),
        local(),
        ServerConfig {
            overlap: 2,
            token: None,
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("differ"), "{err}");
}
