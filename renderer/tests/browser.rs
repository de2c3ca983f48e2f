//! The monitor in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver. A renderer and a collector (SQLite) run
//! in-process on an isolated stream; with `/monitor` open, a render is triggered; the
//! run appears without a reload (SSE), a click opens it, its variants show status and
//! latency, the timeline lists its events. Two more follow the live views closely:
//! runs arriving on an open list stay reachable through "Older runs", and a run page
//! opened mid-run shows its completion in the metadata. Every page is photographed at
//! a desktop's width and a phone's, and at the phone's none scrolls sideways; live
//! updates are announced without taking keyboard focus; the date-time pickers show
//! the browser's time zone or UTC. Screenshots land in `target/` (paths printed).

use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
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

/// chromedriver on a free port in a process group of its own, which Chromium joins:
/// the whole group is killed when dropped, so a failing test leaves no browser behind
/// (killing only chromedriver orphaned Chromium's processes).
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra environment variables for the browser (it inherits the driver's):
    /// `TZ` sets its time zone.
    fn start_with(env: &[(&str, &str)]) -> Self {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install it with `apt-get install -y chromium chromium-driver` \
                 (scripts/services.sh does when missing)"
            );
        }
        let port = test_support::free_port();
        let child = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .envs(env.iter().copied())
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
        // The group's id is chromedriver's pid (`process_group(0)`).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
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

/// A renderer whose local provider takes `latency` per variant.
async fn start_renderer(isolation: &Isolation, latency: Duration) -> Renderer {
    start_renderer_with(
        isolation,
        renderer::config::LocalSettings {
            latency,
            ..Default::default()
        },
    )
    .await
}

/// A renderer whose local provider behaves as `local` says (latency, failures).
async fn start_renderer_with(
    isolation: &Isolation,
    local: renderer::config::LocalSettings,
) -> Renderer {
    let images = tempfile::tempdir().unwrap();
    let mut settings =
        renderer::config::Settings::local("127.0.0.1:0".parse().unwrap(), images.path().into());
    settings.provider = renderer::config::ProviderSettings::Local(local);
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
    render_at(&renderer.base, request_id).await
}

/// A signed render of [`VARIANTS`] on the renderer at `base`; its JSON answer.
async fn render_at(base: &str, request_id: &str) -> Value {
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
        .post(format!("{base}/app-proxy/see-it-now/render?{query}"))
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

/// Saves what the browser shows as `target/<name>` (kept for a human to look at);
/// returns the path.
async fn save_screenshot(browser: &Client, name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, browser.screenshot().await.unwrap()).unwrap();
    path
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

/// A collector (SQLite in `db`) on `isolation`, linking images to `renderer`.
async fn start_collector(
    isolation: &Isolation,
    renderer: &Renderer,
    db: &tempfile::TempDir,
) -> telemetry_collector::RunningCollector {
    let mut settings = CollectorSettings::new(
        &isolation.nats_url,
        &isolation.prefix,
        &isolation.stream,
        &format!("sqlite://{}", db.path().join("telemetry.db").display()),
    );
    settings.stream_max_bytes = Isolation::STREAM_MAX_BYTES;
    settings.monitor.image_base_url = Some(format!("{}/images", renderer.base));
    Collector::build(settings)
        .await
        .expect("start the collector")
        .spawn()
}

/// `GET {collector}{path}` as JSON.
async fn api(collector: &telemetry_collector::RunningCollector, path: &str) -> Value {
    let response = reqwest::get(format!("{}{path}", collector.base_url()))
        .await
        .expect("the collector answers");
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON")
}

/// Marks the page so that a reload (which would erase the mark) can be told apart
/// from a live update.
async fn mark_page(browser: &Client) {
    browser
        .execute("window.__monitorTest = 'same page'; return 1;", vec![])
        .await
        .unwrap();
}

/// Whether the page still has [`mark_page`]'s mark, and how many live updates it had.
async fn same_page(browser: &Client) -> (bool, u64) {
    let seen = browser
        .execute(
            "return [window.__monitorTest || null, document.body.dataset.liveUpdates || '0'];",
            vec![],
        )
        .await
        .unwrap();
    (
        seen[0] == "same page",
        seen[1].as_str().and_then(|n| n.parse().ok()).unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_shows_up_live_in_the_monitor_and_opens_with_its_variants_and_events() {
    let isolation = Isolation::new();
    let renderer = start_renderer(&isolation, Duration::ZERO).await;
    let db = tempfile::tempdir().unwrap();
    let collector = start_collector(&isolation, &renderer, &db).await;
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
    mark_page(&browser).await;

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
    let (same, updates) = same_page(&browser).await;
    assert!(same, "the run must arrive without a reload");
    assert!(updates > 0, "the run came by SSE");
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
    // And over time: the run's variants in a column, its model's latency as a point.
    browser
        .find(Locator::Css("svg.chart-time rect.bar-ok"))
        .await
        .expect("variants by status over time");
    browser
        .find(Locator::Css("svg.chart-time circle.dot"))
        .await
        .expect("latency per model over time");
    save_screenshot(&browser, "monitor-overview-screenshot.png").await;

    // The figures refresh themselves; keyboard focus stays on the link it was on.
    browser
        .goto(&format!(
            "{}/monitor/overview?window=15m&refresh=10s",
            collector.base_url()
        ))
        .await
        .unwrap();
    let focused = browser
        .execute(
            "var link = document.querySelector('#overview-live a[href^=\"/monitor?\"]'); \
             link.focus(); return [link.getAttribute('href'), link.textContent];",
            vec![],
        )
        .await
        .unwrap();
    let refreshed = eventually("the overview refreshed itself", || async {
        let state = browser
            .execute(
                "var live = document.getElementById('overview-live'); \
                 var active = document.activeElement; \
                 return [live.dataset.refreshes || '0', active.getAttribute('href'), \
                 active.textContent, live.contains(active) && active.tagName === 'A'];",
                vec![],
            )
            .await
            .ok()?;
        (state[0] != "0").then_some(state)
    })
    .await;
    // The same link, whose window has moved on with the clock.
    assert_eq!(
        refreshed[3], true,
        "focus on a link of the figures: {refreshed:?}"
    );
    assert_eq!(refreshed[2], focused[1], "focus kept across the refresh");
    let from = |href: &serde_json::Value| {
        let href = href.as_str().unwrap_or_default().to_owned();
        href.split(['?', '&'])
            .find_map(|p| {
                p.strip_prefix("from=")
                    .map(|v| v.parse::<i64>().unwrap_or(0))
            })
            .unwrap_or(0)
    };
    assert!(
        from(&refreshed[1]) > from(&focused[0]),
        "the window ends now: {refreshed:?} after {focused:?}"
    );

    browser.close().await.unwrap();
    drop(driver);
    let _ = renderer.stop.send(());
    let _ = renderer.task.await;
    collector.stop().await;
}

/// The run ids the runs list shows, in order.
async fn listed_runs(browser: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    for row in browser
        .find_all(Locator::Css("#runs tr.run"))
        .await
        .unwrap_or_default()
    {
        if let Ok(Some(id)) = row.attr("data-run-id").await {
            ids.push(id);
        }
    }
    ids
}

/// Runs that arrive while `/monitor` is open push older rows off page 1; "Older runs"
/// must still reach every one of them, each exactly once (before, the link kept the
/// cursor of page load and the rows pushed off were on no page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_arrive_live_stay_reachable_through_older_runs() {
    const PAGE: usize = 3;
    let isolation = Isolation::new();
    let renderer = start_renderer(&isolation, Duration::ZERO).await;
    let db = tempfile::tempdir().unwrap();
    let collector = start_collector(&isolation, &renderer, &db).await;
    let driver = ChromeDriver::start();
    let browser = driver.browser().await;

    // More runs than a page before the page opens, so it links to older ones.
    let mut run_ids = Vec::new();
    for i in 0..PAGE + 1 {
        let answer = render(&renderer, &format!("req-before-{i}")).await;
        run_ids.push(answer["runId"].as_str().unwrap().to_owned());
    }
    eventually("the first runs stored", || async {
        let runs = api(&collector, "/api/v1/runs").await;
        (runs["runs"].as_array().unwrap().len() == run_ids.len()).then_some(())
    })
    .await;
    browser
        .goto(&format!("{}/monitor?limit={PAGE}", collector.base_url()))
        .await
        .unwrap();
    eventually("page 1 at load", || async {
        (listed_runs(&browser).await.len() == PAGE).then_some(())
    })
    .await;
    browser
        .find(Locator::Css("a.next"))
        .await
        .expect("page 1 links older runs");
    mark_page(&browser).await;

    // More runs than a page arrive while it is open.
    for i in 0..PAGE + 2 {
        let answer = render(&renderer, &format!("req-live-{i}")).await;
        run_ids.push(answer["runId"].as_str().unwrap().to_owned());
    }
    let newest: Vec<String> = run_ids.iter().rev().take(PAGE).cloned().collect();
    eventually("page 1 showing the newest runs, live", || async {
        (listed_runs(&browser).await == newest).then_some(())
    })
    .await;
    let (same, updates) = same_page(&browser).await;
    assert!(
        same && updates > 0,
        "the runs came by SSE ({updates} updates)"
    );
    save_screenshot(&browser, "monitor-runs-live-paging-screenshot.png").await;

    // Follow "Older runs" to the end.
    let mut seen = listed_runs(&browser).await;
    for _ in 0..run_ids.len() {
        let Ok(next) = browser.find(Locator::Css("a.next")).await else {
            break;
        };
        let href = next.attr("href").await.unwrap().unwrap_or_default();
        next.click().await.unwrap();
        eventually("the older page", || async {
            let url = browser.current_url().await.ok()?;
            (href.ends_with(url.query().unwrap_or("-"))).then_some(())
        })
        .await;
        browser
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css("table#runs"))
            .await
            .unwrap();
        seen.extend(listed_runs(&browser).await);
    }
    let mut expected = run_ids.clone();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(
        got, expected,
        "every run once across the pages; in page order: {seen:?}"
    );

    browser.close().await.unwrap();
    drop(driver);
    let _ = renderer.stop.send(());
    let _ = renderer.task.await;
    collector.stop().await;
}

/// The metadata of the run page (`dl.meta`) as label → value.
async fn run_meta(browser: &Client) -> Vec<(String, String)> {
    let pairs = browser
        .execute(
            "return Array.from(document.querySelectorAll('dl.meta dt'))\
             .map(dt => [dt.textContent, dt.nextElementSibling ? dt.nextElementSibling.textContent : '']);",
            vec![],
        )
        .await
        .unwrap();
    pairs
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or_default().to_owned(),
                pair[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn meta<'a>(meta: &'a [(String, String)], label: &str) -> Option<&'a str> {
    meta.iter()
        .find(|(l, _)| l == label)
        .map(|(_, value)| value.as_str())
}

/// A run page opened while its run is running follows it to the end without a
/// reload: the metadata's status becomes the terminal one and the completion time
/// appears, as the variants below do (before, only the variants changed and the
/// metadata still said `running`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_page_shows_the_runs_completion_in_its_metadata_live() {
    let isolation = Isolation::new();
    // Slow enough variants that the page opens while the run is running.
    let renderer = start_renderer(&isolation, Duration::from_secs(4)).await;
    let db = tempfile::tempdir().unwrap();
    let collector = start_collector(&isolation, &renderer, &db).await;
    let driver = ChromeDriver::start();
    let browser = driver.browser().await;

    let rendering = {
        let base = renderer.base.clone();
        tokio::spawn(async move { render_at(&base, "req-slow").await })
    };
    let run_id = eventually("the run, running, in the collector", || async {
        let runs = api(&collector, "/api/v1/runs?q=req-slow").await;
        let run = runs["runs"].as_array()?.first()?.clone();
        (run["status"] == "running").then(|| run["run_id"].as_str().unwrap().to_owned())
    })
    .await;
    browser
        .goto(&format!("{}/monitor/runs/{run_id}", collector.base_url()))
        .await
        .unwrap();
    let at_open = eventually("the run page", || async {
        let shown = run_meta(&browser).await;
        (!shown.is_empty()).then_some(shown)
    })
    .await;
    assert_eq!(meta(&at_open, "Status"), Some("running"), "{at_open:?}");
    assert_eq!(meta(&at_open, "Completed"), None, "{at_open:?}");
    mark_page(&browser).await;
    // The reader opens the prompt pack; live updates must not fold it up again.
    browser
        .find(Locator::Css("#pack-json summary"))
        .await
        .expect("the prompt pack JSON")
        .click()
        .await
        .unwrap();

    let answer = rendering.await.unwrap();
    let status = answer["status"].as_str().unwrap().to_owned();
    assert_eq!(status, "complete", "{answer}");
    let done = eventually("the terminal status and the completion time", || async {
        let shown = run_meta(&browser).await;
        let finished = meta(&shown, "Status") == Some(status.as_str())
            && meta(&shown, "Completed").is_some_and(|at| !at.is_empty());
        finished.then_some(shown)
    })
    .await;
    let (same, updates) = same_page(&browser).await;
    assert!(
        same && updates > 0,
        "updated live ({updates} updates): {done:?}"
    );
    let shown = browser
        .find(Locator::Css("#run-status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(shown, status, "the status line agrees with the metadata");
    let still_open = browser
        .execute("return document.getElementById('pack-json').open;", vec![])
        .await
        .unwrap();
    assert_eq!(
        still_open, true,
        "the opened JSON stays open across updates"
    );
    save_screenshot(&browser, "monitor-run-live-screenshot.png").await;

    browser.close().await.unwrap();
    drop(driver);
    let _ = renderer.stop.send(());
    let _ = renderer.task.await;
    collector.stop().await;
}

/// Publishes bytes no envelope parses from to the stream: a dead letter.
async fn publish_garbage(isolation: &Isolation) {
    let client = async_nats::connect(&isolation.nats_url)
        .await
        .expect("connect to NATS");
    let subjects = telemetry_proto::Subjects::new(&isolation.prefix).unwrap();
    let subject = subjects
        .for_kind(telemetry_proto::BodyKind::Event)
        .to_owned();
    async_nats::jetstream::new(client)
        .publish(
            subject,
            b"\x00\x01 not an envelope: garbage bytes, long enough to preview"
                .to_vec()
                .into(),
        )
        .await
        .expect("publish")
        .await
        .expect("the stream stores it");
}

/// `[scrollWidth, innerWidth]` of the page shown.
async fn widths(browser: &Client) -> (u64, u64) {
    let seen = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    (seen[0].as_u64().unwrap(), seen[1].as_u64().unwrap())
}

/// Every page of the monitor at 1400 px and at 390 px (a phone): screenshots of each
/// (paths printed), and at 390 px none is wider than the window (tables scroll in
/// their own box, the navigation wraps). Then, on the runs list, a run arriving live
/// is announced in the polite live region while keyboard focus stays on the link it
/// was on, and the date-time pickers show the browser's time zone (here
/// Asia/Kolkata, UTC+05:30) or UTC, sending an RFC 3339 instant either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_phone_announces_live_runs_and_reads_time_zones() {
    let isolation = Isolation::new();
    // Half the variants fail, so the run page has failures to mark.
    let renderer = start_renderer_with(
        &isolation,
        renderer::config::LocalSettings {
            failure_rate: 0.5,
            seed: 7,
            ..Default::default()
        },
    )
    .await;
    let db = tempfile::tempdir().unwrap();
    let collector = start_collector(&isolation, &renderer, &db).await;
    let driver = ChromeDriver::start_with(&[("TZ", "Asia/Kolkata")]);
    let browser = driver.browser().await;

    let mut failing = None;
    for i in 0..4 {
        let answer = render(
            &renderer,
            &format!("req-phone-{i}-with-a-longish-request-id"),
        )
        .await;
        if answer["status"] != "complete" {
            failing = answer["runId"].as_str().map(str::to_owned);
        }
    }
    let failing = failing.expect("a run with a failed variant (seed 7, half failing)");
    publish_garbage(&isolation).await;
    eventually("the runs and the dead letter stored", || async {
        let runs = api(&collector, "/api/v1/runs").await;
        let dead = api(&collector, "/api/v1/dead-letters").await;
        (runs["runs"].as_array()?.len() == 4 && !dead["dead_letters"].as_array()?.is_empty())
            .then_some(())
    })
    .await;

    let base = collector.base_url();
    let pages = [
        ("runs", "/monitor".to_owned()),
        ("run", format!("/monitor/runs/{failing}")),
        ("events", "/monitor/events".to_owned()),
        ("dead-letters", "/monitor/dead-letters".to_owned()),
        ("producers", "/monitor/producers".to_owned()),
        ("overview", "/monitor/overview?window=1h".to_owned()),
        ("overview-30d", "/monitor/overview?window=30d".to_owned()),
        ("errors", "/monitor/errors?window=1h".to_owned()),
        ("login", "/monitor/login".to_owned()),
        ("404", "/monitor/runs/no-such-run".to_owned()),
        ("400", "/monitor?status=no-such-status".to_owned()),
    ];
    let mut too_wide = Vec::new();
    for (width, height) in [(1400, 1000), (390, 844)] {
        browser.set_window_size(width, height).await.unwrap();
        for (name, path) in &pages {
            browser.goto(&format!("{base}{path}")).await.unwrap();
            browser
                .wait()
                .at_most(PATIENCE)
                .for_element(Locator::Css("main"))
                .await
                .unwrap_or_else(|_| panic!("{path} loads"));
            let shot = save_screenshot(
                &browser,
                &format!("monitor-screenshots/{name}-{width}px.png"),
            )
            .await;
            println!("screenshot: {}", shot.display());
            let (scroll, inner) = widths(&browser).await;
            if width == 390 {
                assert!(
                    inner <= 400,
                    "{path}: the window is phone-sized ({inner} px)"
                );
                if scroll > inner {
                    too_wide.push(format!("{path}: {scroll} px wide in a {inner} px window"));
                }
            }
        }
    }
    assert!(
        too_wide.is_empty(),
        "pages scroll sideways at 390 px: {too_wide:?}"
    );
    // The run page shows the failure on its timeline.
    browser
        .goto(&format!("{base}/monitor/runs/{failing}"))
        .await
        .unwrap();
    browser
        .find(Locator::Css("#timeline rect.bar-failed"))
        .await
        .expect("a failed bar on the timeline");

    // A new run is announced; focus stays on the link it was on.
    browser.set_window_size(1400, 1000).await.unwrap();
    browser.goto(&format!("{base}/monitor")).await.unwrap();
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#runs a.shop-link"))
        .await
        .unwrap();
    mark_page(&browser).await;
    let focused_href = browser
        .execute(
            "var link = document.querySelector('#runs tr.run:last-child a.run-link'); \
             link.focus(); return link.getAttribute('href');",
            vec![],
        )
        .await
        .unwrap();
    let answer = render(&renderer, "req-phone-live").await;
    let new_run = answer["runId"].as_str().unwrap().to_owned();
    eventually("the new run, live", || async {
        browser
            .find(Locator::Css(&format!("tr[data-run-id=\"{new_run}\"]")))
            .await
            .ok()
    })
    .await;
    let announced = eventually("the announcement", || async {
        let text = browser
            .execute(
                "return document.getElementById('live-status').textContent;",
                vec![],
            )
            .await
            .ok()?;
        let text = text.as_str()?.to_owned();
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert_eq!(announced, "1 new run");
    let region = browser
        .execute(
            "var r = document.getElementById('live-status'); \
             return [r.getAttribute('aria-live'), r.getAttribute('role')];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(region, json!(["polite", "status"]));
    let still = browser
        .execute(
            "var a = document.activeElement; return [a.tagName, a.getAttribute('href')];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(still, json!(["A", focused_href]), "focus stays on its link");
    let (same, updates) = same_page(&browser).await;
    assert!(same && updates > 0, "the run came live");

    // Date-time pickers: the browser's zone, or UTC; an instant is sent either way.
    browser
        .goto(&format!("{base}/monitor?from=2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let picker = || async {
        let seen = browser
            .execute(
                "return [document.querySelector('input[name=from]').value, \
                 document.querySelector('.tz-name').textContent];",
                vec![],
            )
            .await
            .unwrap();
        (
            seen[0].as_str().unwrap().to_owned(),
            seen[1].as_str().unwrap().to_owned(),
        )
    };
    let (value, zone) = picker().await;
    // (The browser drops zero seconds from the value it shows.)
    assert_eq!(value, "2026-01-01T05:30", "shown in the browser's zone");
    // Chromium names the zone by its ICU id (`Asia/Calcutta`).
    assert!(
        zone.starts_with("(Asia/") && zone.ends_with(", UTC+05:30)"),
        "{zone}"
    );
    browser
        .find(Locator::Css("input[data-tz-utc]"))
        .await
        .expect("the UTC toggle shows")
        .click()
        .await
        .unwrap();
    assert_eq!(
        picker().await,
        ("2026-01-01T00:00".to_owned(), "(UTC)".to_owned())
    );
    browser
        .find(Locator::Css("input[data-tz-utc]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .find(Locator::Css("#runs-filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The page was opened with `from=` already: wait for the submitted form's URL
    // (the form encodes the colons), not the one still shown before it loads.
    let query = eventually("the filtered list", || async {
        let url = browser.current_url().await.ok()?;
        let query = url.query()?.to_owned();
        query.contains("from=2026-01-01T00%3A").then_some(query)
    })
    .await;
    assert!(
        query.contains("from=2026-01-01T00%3A00%3A00.000Z"),
        "the instant, in UTC: {query}"
    );

    browser.close().await.unwrap();
    drop(driver);
    let _ = renderer.stop.send(());
    let _ = renderer.task.await;
    collector.stop().await;
}
