//! The monitor in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver. A renderer and a collector (SQLite) run
//! in-process on an isolated stream; with `/monitor` open, a render is triggered; the
//! run appears without a reload (SSE), a click opens it, its variants show status and
//! latency, the timeline lists its events. Screenshots land in `target/`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use telemetry_collector::{Application as Collector, Settings as CollectorSettings};
use test_support::Isolation;
use tokio::sync::oneshot;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const SHOP: &str = "browser-shop.myshopify.com";
const SECRET: &str = "app-proxy-browser-secret";
const VARIANTS: [&str; 4] = ["w", "x", "y", "z"];
/// How long the page may take to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(30);

/// chromedriver on a free port, killed when dropped.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> Self {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install it with `apt-get install -y chromium chromium-driver` \
                 (scripts/services.sh does when missing)"
            );
        }
        let port = test_support::free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Self { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1400,1000"],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("open a headless Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A renderer on a free port with telemetry to `isolation`.
struct Renderer {
    base: String,
    _images: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<telemetry::ShutdownReport>>,
}

async fn start_renderer(isolation: &Isolation) -> Renderer {
    let images = tempfile::tempdir().unwrap();
    let mut settings =
        renderer::config::Settings::local("127.0.0.1:0".parse().unwrap(), images.path().into());
    settings.shopify_api_secret = Some(SECRET.into());
    settings.telemetry = Some(telemetry::TelemetryConfig {
        nats: telemetry::NatsConfig {
            url: isolation.nats_url.clone(),
            ..Default::default()
        },
        subject_prefix: isolation.prefix.clone(),
        stream: isolation.stream.clone(),
        stream_max_bytes: Isolation::STREAM_MAX_BYTES,
        service: "renderer".into(),
        ..Default::default()
    });
    let app = renderer::Application::build(settings)
        .await
        .expect("start the renderer");
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    Renderer {
        base,
        _images: images,
        stop,
        task,
    }
}

/// A small PNG (the local provider composites real images).
fn png(width: u32, height: u32, rgb: [u8; 3]) -> String {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        if (x + y) % 4 == 0 {
            image::Rgb([255, 255, 255])
        } else {
            image::Rgb(rgb)
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    base64::engine::general_purpose::STANDARD.encode(out.into_inner())
}

async fn render(renderer: &Renderer, request_id: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let query = format!(
        "shop={SHOP}&logged_in_customer_id=&path_prefix=%2Fapps%2Fsee-it-now&timestamp={now}"
    );
    let query = format!(
        "{query}&signature={}",
        renderer::signature::sign(&query, SECRET)
    );
    let body = json!({
        "productId": "gid://shopify/Product/7",
        "productAssetId": "asset-7",
        "roomSessionId": "room-7",
        "productImage": png(24, 16, [200, 30, 30]),
        "roomImage": png(96, 64, [40, 90, 160]),
        "resolvedFacts": {"widthCm": 80},
        "promptPack": {
            "version": "pack-browser",
            "variants": VARIANTS.iter().map(|id| json!({"id": id, "prompt": format!("style {id}")})).collect::<Vec<_>>(),
        },
    });
    let response = reqwest::Client::new()
        .post(format!(
            "{}/app-proxy/see-it-now/render?{query}",
            renderer.base
        ))
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .body(body.to_string())
        .send()
        .await
        .expect("the renderer answers");
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls `check` until it returns `Some`, failing with `what` after [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Saves what the browser shows as `target/<name>` (kept for a human to look at).
async fn save_screenshot(browser: &Client, name: &str) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join(name), browser.screenshot().await.unwrap()).unwrap();
}

/// The texts of the cells matching `css` in each row matching `rows`.
async fn cell_texts(browser: &Client, rows: &str, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for row in browser
        .find_all(Locator::Css(rows))
        .await
        .unwrap_or_default()
    {
        if let Ok(cell) = row.find(Locator::Css(css)).await {
            out.push(cell.text().await.unwrap_or_default());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_shows_up_live_in_the_monitor_and_opens_with_its_variants_and_events() {
    let isolation = Isolation::new();
    let renderer = start_renderer(&isolation).await;
    let db = tempfile::tempdir().unwrap();
    let mut settings = CollectorSettings::new(
        &isolation.nats_url,
        &isolation.prefix,
        &isolation.stream,
        &format!("sqlite://{}", db.path().join("telemetry.db").display()),
    );
    settings.stream_max_bytes = Isolation::STREAM_MAX_BYTES;
    settings.monitor.image_base_url = Some(format!("{}/images", renderer.base));
    let collector = Collector::build(settings)
        .await
        .expect("start the collector")
        .spawn();
    let driver = ChromeDriver::start();
    let browser = driver.browser().await;

    browser
        .goto(&format!("{}/monitor", collector.base_url()))
        .await
        .unwrap();
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("table#runs"))
        .await
        .expect("the runs page loads");
    // A mark that a reload would erase.
    browser
        .execute("window.__monitorTest = 'same page'; return 1;", vec![])
        .await
        .unwrap();

    let answer = render(&renderer, "req-browser").await;
    assert_eq!(answer["status"], "complete", "{answer}");
    let run_id = answer["runId"].as_str().unwrap().to_owned();
    let row = format!("tr[data-run-id=\"{run_id}\"]");
    let link = eventually("the new run in the list", || async {
        browser
            .find(Locator::Css(&format!("{row} a.run-link")))
            .await
            .ok()
    })
    .await;
    let same_page = browser
        .execute(
            "return [window.__monitorTest || null, document.body.dataset.liveUpdates || null];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        same_page[0], "same page",
        "the run must arrive without a reload"
    );
    assert!(
        same_page[1].as_str().is_some_and(|n| n != "0"),
        "the run came by SSE: {same_page}"
    );
    let shop = browser
        .find(Locator::Css(&format!("{row} td:nth-child(2)")))
        .await
        .unwrap();
    assert_eq!(shop.text().await.unwrap(), SHOP);
    save_screenshot(&browser, "monitor-runs-screenshot.png").await;

    link.click().await.unwrap();
    eventually("the run page", || async {
        let url = browser.current_url().await.ok()?;
        url.path()
            .ends_with(&format!("/monitor/runs/{run_id}"))
            .then_some(())
    })
    .await;
    // Latency as the page prints it (`850 ms`, `12.3 s`).
    let expected: Vec<(String, String)> = answer["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let ms = v["latencyMs"].as_i64().unwrap();
            let shown = if ms < 1000 {
                format!("{ms} ms")
            } else {
                format!("{:.1} s", ms as f64 / 1000.0)
            };
            (v["variantId"].as_str().unwrap().to_owned(), shown)
        })
        .collect();
    eventually("every variant with status and latency", || async {
        let ids = cell_texts(&browser, "#variants tr.variant", "td:nth-child(1)").await;
        let statuses = cell_texts(&browser, "#variants tr.variant", ".status").await;
        let latencies = cell_texts(&browser, "#variants tr.variant", ".latency").await;
        let shown: Vec<(String, String)> = ids.into_iter().zip(latencies).collect();
        let all_shown = statuses.len() == VARIANTS.len()
            && statuses.iter().all(|s| s == "success")
            && expected.iter().all(|pair| shown.contains(pair));
        all_shown.then_some(())
    })
    .await;
    let types = eventually("the run's events on the timeline", || async {
        let types = cell_texts(&browser, "#events tr.event", ".event-type").await;
        (types.iter().any(|t| t == "sf_render_requested")
            && types.iter().filter(|t| *t == "variant_result").count() == VARIANTS.len())
        .then_some(types)
    })
    .await;
    assert!(types.iter().any(|t| t == "run_completed"), "{types:?}");
    let page = browser.source().await.unwrap();
    assert!(
        page.contains(&format!("{}/images/", renderer.base)),
        "thumbnail links"
    );
    save_screenshot(&browser, "monitor-screenshot.png").await;

    // The overview draws the run's model and prompt pack as SVG charts.
    browser
        .goto(&format!(
            "{}/monitor/overview?window=1h",
            collector.base_url()
        ))
        .await
        .unwrap();
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("svg.chart rect.bar-ok"))
        .await
        .expect("the overview's charts");
    let overview = browser.source().await.unwrap();
    assert!(overview.contains("local-composite") && overview.contains("pack-browser"));
    save_screenshot(&browser, "monitor-overview-screenshot.png").await;

    browser.close().await.unwrap();
    drop(driver);
    let _ = renderer.stop.send(());
    let _ = renderer.task.await;
    collector.stop().await;
}
