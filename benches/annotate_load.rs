//! Load on `detox annotate`: 50 concurrent clients submit 10,000 judgments to one server on
//! 127.0.0.1 (each client is one annotator who loads a page and submits it, over and over),
//! then the database is exported and checked: none lost, none duplicated. Prints throughput
//! and the p50 / p99 latency of a page load and of a submission.
//!
//! `cargo bench --bench annotate_load` (release build); `-- CLIENTS ITEMS` to change the shape
//! (judgments = CLIENTS x ITEMS; defaults 50 and 200).

use std::time::{Duration, Instant};

use detox_annotate::{export_jsonl, Db, Item, RunningServer, ServerConfig};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let clients: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(50);
    let items_n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let dir = std::env::temp_dir().join(format!("detox-annotate-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("ratings.sqlite");
    let items: Vec<Item> = (0..items_n)
        .map(|i| Item {
            id: i.to_string(),
            dialogue: format!(
                "#Person1#: {}\n#Person2#: fine.",
                "How are you today? ".repeat(20)
            ),
            reference: None,
            models: ["a".into(), "b".into()],
            summaries: [format!("summary a {i}"), format!("summary b {i}")],
        })
        .collect();
    let server = RunningServer::start(
        &db,
        &items,
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig {
            overlap: 2,
            token: None,
        },
    )
    .unwrap();
    let base = format!("http://{}", server.addr);
    let started = Instant::now();
    let lat: Vec<(Vec<Duration>, Vec<Duration>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let base = base.clone();
                sc.spawn(move || client(&base, &format!("client{c}"), items_n))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = started.elapsed();
    server.stop().unwrap();

    let (text, n) = export_jsonl(&Db::open_existing(&db).unwrap()).unwrap();
    let mut keys: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["annotator"].to_string(), v["item"].to_string())
        })
        .collect();
    keys.sort();
    keys.dedup();
    let want = clients * items_n;
    assert_eq!(n, want, "judgments lost or added");
    assert_eq!(keys.len(), want, "a judgment stored twice");

    let mut gets: Vec<Duration> = lat.iter().flat_map(|l| l.0.iter().copied()).collect();
    let mut posts: Vec<Duration> = lat.iter().flat_map(|l| l.1.iter().copied()).collect();
    gets.sort();
    posts.sort();
    let pct = |v: &[Duration], p: f64| {
        v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
    };
    println!(
        "{clients} clients, {want} judgments stored (none lost, none duplicated) in {:.1} s: {:.0} judgments/s",
        wall.as_secs_f64(),
        want as f64 / wall.as_secs_f64()
    );
    println!(
        "page load  p50 {:.2} ms  p99 {:.2} ms\nsubmission p50 {:.2} ms  p99 {:.2} ms",
        pct(&gets, 0.5),
        pct(&gets, 0.99),
        pct(&posts, 0.5),
        pct(&posts, 0.99)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One annotator: load the page, submit it, until every item is judged. Latencies of the page
/// loads and of the submissions.
fn client(base: &str, who: &str, items: usize) -> (Vec<Duration>, Vec<Duration>) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let (mut gets, mut posts) = (Vec::new(), Vec::new());
    for _ in 0..items {
        let t = Instant::now();
        let html = agent
            .get(&format!("{base}/rate/{who}"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        gets.push(t.elapsed());
        let at = html.find("name=\"page\" value=\"").expect("a page to rate") + 19;
        let token = &html[at..at + 32];
        let t = Instant::now();
        let r = agent.post(&format!("{base}/rate/{who}")).send_form(&[
            ("page", token),
            ("preferred", "tie"),
            ("confidence", "2"),
            ("left_readability", "4"),
            ("left_coherence", "4"),
            ("right_readability", "5"),
            ("right_coherence", "5"),
        ]);
        posts.push(t.elapsed());
        assert_eq!(r.unwrap().status(), 303);
    }
    (gets, posts)
}
