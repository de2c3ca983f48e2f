use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{request, spawn_app};

/// A GET sent byte for byte (HTTP clients normalise `..` away before sending).
async fn raw_get(base: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[tokio::test]
async fn images_are_served_by_key_and_traversal_is_refused() {
    let app = spawn_app(None, |_| {}).await;
    let secret = app.store_dir.path().join("renders").join("secret.txt");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, "do not serve").unwrap();
    let answer: serde_json::Value = app
        .render(&request(&["a"]).body, "req-img")
        .await
        .json()
        .await
        .unwrap();
    let url = answer["variants"][0]["imageUrl"].as_str().unwrap();
    let (status, _) = raw_get(&app.base, url).await;
    assert_eq!(status, 200);

    for path in [
        "/images/renders/../renders/secret.txt",
        "/images/../../etc/passwd",
        "/images/renders/%2e%2e/%2e%2e/etc/passwd",
        "/images/..%2f..%2fetc%2fpasswd",
        "/images/renders%2f..%2frenders%2fsecret.txt",
        "/images/%2fetc%2fpasswd",
        "/images/renders/a%5c..%5c..%5csecret.txt",
        "/images/renders/./secret.txt",
    ] {
        let (status, response) = raw_get(&app.base, path).await;
        assert!(
            status == 400 || status == 404,
            "{path}: {status}\n{response}"
        );
        assert!(!response.contains("do not serve"), "{path} served the file");
        assert!(!response.contains("root:"), "{path} served /etc/passwd");
    }
    let (status, _) = raw_get(&app.base, "/images/renders/nope/a.png").await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_directory_key_is_404_without_an_error_log() {
    let (logs, _default) = test_support::logs::capture(tracing::Level::INFO);

    let app = spawn_app(None, |_| {}).await;
    let answer: serde_json::Value = app
        .render(&request(&["a"]).body, "req-dir")
        .await
        .json()
        .await
        .unwrap();
    let run_id = answer["runId"].as_str().unwrap();
    for path in ["/images/renders", &format!("/images/renders/{run_id}")] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "not_found", "{path}: {answer}");
    }
    app.stop().await;
    let logs = logs.text();
    assert!(
        logs.contains("renderer listening"),
        "no logs captured: {logs}"
    );
    assert!(!logs.contains("ERROR"), "{logs}");
}

#[tokio::test]
async fn images_say_nosniff() {
    let app = spawn_app(None, |_| {}).await;
    let answer: serde_json::Value = app
        .render(&request(&["a"]).body, "req-nosniff")
        .await
        .json()
        .await
        .unwrap();
    let url = answer["variants"][0]["imageUrl"].as_str().unwrap();
    let image = app.get(url).await;
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(image.headers()["x-content-type-options"], "nosniff");
    let missing = app.get("/images/renders/nope/a.png").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-content-type-options"], "nosniff");
    app.stop().await;
}

#[tokio::test]
async fn a_symlink_out_of_the_store_is_not_followed() {
    let app = spawn_app(None, |_| {}).await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.png"), "outside the store").unwrap();
    let renders = app.store_dir.path().join("renders");
    std::fs::create_dir_all(&renders).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.png"), renders.join("link.png"))
        .unwrap();
    std::os::unix::fs::symlink(outside.path(), renders.join("linked-dir")).unwrap();
    std::os::unix::fs::symlink(outside.path(), app.store_dir.path().join("outside")).unwrap();
    // A link that stays inside the store is harmless and still served.
    let answer: serde_json::Value = app
        .render(&request(&["a"]).body, "req-link")
        .await
        .json()
        .await
        .unwrap();
    let key = answer["variants"][0]["imageKey"].as_str().unwrap();
    std::os::unix::fs::symlink(app.store_dir.path().join(key), renders.join("inside.png")).unwrap();
    assert_eq!(app.get("/images/renders/inside.png").await.status(), 200);

    for path in [
        "/images/renders/link.png",
        "/images/renders/linked-dir/secret.png",
        "/images/outside/secret.png",
    ] {
        let (status, response) = raw_get(&app.base, path).await;
        assert_eq!(status, 404, "{path}\n{response}");
        assert!(
            !response.contains("outside the store"),
            "{path} followed the link"
        );
    }
    app.stop().await;
}
