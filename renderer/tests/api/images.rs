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
