//! The annotation page in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, fantoccini). An annotator signs in, sees a model's `<script>` as text, chooses
//! with the keyboard shortcuts, rates with the mouse, submits, and gets the next item; the
//! judgment is in the database.
//!
//! Runs when `DETOX_TEST_BROWSER=1` (CI sets it and installs Debian's `chromium` and
//! `chromium-driver`); skipped otherwise. `CHROMEDRIVER` / `CHROMIUM` override the paths.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use detox_annotate::{export_jsonl, Db, Item, RunningServer, ServerConfig};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_driver() -> (Driver, u16) {
    let exe = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = free_port();
    let child = Command::new(&exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe} (apt install chromium-driver): {e}"));
    let driver = Driver(child);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "chromedriver did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (driver, port)
}

async fn press(c: &Client, keys: &[char]) {
    let mut actions = KeyActions::new("keyboard".into());
    for &k in keys {
        actions = actions
            .then(KeyAction::Down { value: k })
            .then(KeyAction::Up { value: k });
    }
    c.perform_actions(actions).await.unwrap();
}

async fn checked(c: &Client, id: &str) -> bool {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .is_selected()
        .await
        .unwrap()
}

#[test]
fn an_annotator_rates_an_item_in_chromium() {
    if std::env::var("DETOX_TEST_BROWSER").as_deref() != Ok("1") {
        eprintln!("skipped: set DETOX_TEST_BROWSER=1 (needs chromium and chromium-driver)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("detox-annotate-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("ratings.sqlite");
    let items: Vec<Item> = (0..2)
        .map(|i| Item {
            id: format!("d{i}"),
            dialogue: format!("#Person1#: Hello {i}.\n#Person2#: Hi."),
            reference: None,
            models: ["m1".into(), "m2".into()],
            summaries: [
                "<script>document.title='pwned'</script> one".into(),
                format!("They greet each other {i}."),
            ],
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
    let (_driver, port) = start_driver();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shown_right = rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");

        c.goto(&format!("{base}/")).await.unwrap();
        c.find(Locator::Css("input[name=name]"))
            .await
            .unwrap()
            .send_keys("ann")
            .await
            .unwrap();
        c.find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // the click starts the navigation; wait for the rating page before reading it
        let progress = c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id("progress"))
            .await
            .expect("the rating page within 10 s");
        assert!(c.current_url().await.unwrap().as_str().ends_with("/rate/ann"));
        let progress = progress.text().await.unwrap();
        assert_eq!(progress, "0 / 2");
        // the model's script is text on the page, and it did not run
        let body = c.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
        assert!(body.contains("<script>document.title='pwned'</script> one"));
        assert_ne!(c.title().await.unwrap(), "pwned");

        // keyboard: b = summary B, 3 = sure
        press(&c, &['b', '3']).await;
        assert!(checked(&c, "preferred-right").await);
        assert!(checked(&c, "confidence-3").await);
        assert!(!checked(&c, "preferred-left").await);
        let right_text = c
            .find(Locator::Css("#summary-right p"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // mouse: the four ratings
        for id in ["left_readability-2", "left_coherence-3", "right_readability-6", "right_coherence-7"] {
            c.find(Locator::Id(id)).await.unwrap().click().await.unwrap();
        }
        c.find(Locator::Css("textarea[name=note]"))
            .await
            .unwrap()
            .send_keys("B reads better")
            .await
            .unwrap();
        // Ctrl+Enter submits
        let submit = KeyActions::new("keyboard2".into())
            .then(KeyAction::Down { value: Key::Control.into() })
            .then(KeyAction::Down { value: Key::Enter.into() })
            .then(KeyAction::Up { value: Key::Enter.into() })
            .then(KeyAction::Up { value: Key::Control.into() });
        c.perform_actions(submit).await.unwrap();
        let t = Instant::now();
        loop {
            // while the next page loads, the element may be gone for a moment: not yet
            let p = match c.find(Locator::Id("progress")).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if p == "1 / 2" {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "still at {p}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.close().await.unwrap();
        right_text
    });
    server.stop().unwrap();

    let (text, n) = export_jsonl(&Db::open_existing(&db).unwrap()).unwrap();
    assert_eq!(n, 1);
    let j: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let right = j["shown"][1].as_str().unwrap();
    assert_eq!(j["preferred"], right);
    assert_eq!(j["confidence"], 3);
    assert_eq!(j["ratings"][right]["readability"], 6);
    assert_eq!(j["ratings"][right]["coherence"], 7);
    assert_eq!(j["note"], "B reads better");
    // the summary shown on the right is the right model's
    let k = if right == "m1" { 0 } else { 1 };
    assert_eq!(shown_right, items[0].summaries[k]);
    let _ = std::fs::remove_dir_all(&dir);
}
