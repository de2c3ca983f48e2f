use std::time::Duration;

use test_support::Isolation;

use crate::helpers::{read_envelopes, records, request, signed_query, spawn_app, SECRET, SHOP};

#[tokio::test]
async fn a_missing_or_wrong_signature_gets_401_and_no_run() {
    let isolation = Isolation::new();
    let app = spawn_app(Some(&isolation), |_| {}).await;
    let body = request(&["a"]).body.to_string().into_bytes();

    let unsigned = app
        .post(
            &format!("shop={SHOP}&timestamp=1"),
            body.clone(),
            "req-unsigned",
        )
        .await;
    assert_eq!(unsigned.status(), 401);

    let wrong_secret = signed_query(SHOP, "not-the-secret");
    let wrong = app.post(&wrong_secret, body.clone(), "req-wrong").await;
    assert_eq!(wrong.status(), 401);

    // A signature for one shop does not carry over to another.
    let forged = signed_query(SHOP, SECRET).replace("test-shop", "other-shop");
    let forged = app.post(&forged, body.clone(), "req-forged").await;
    assert_eq!(forged.status(), 401);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("renderer_requests_total{outcome=\"unauthorized\"} 3"));
    assert!(metrics.contains("telemetry_emitted_total 0"), "{metrics}");

    // Shutdown flushes everything emitted: only the SDK's own stats may be there.
    app.stop().await;
    let envelopes = read_envelopes(
        &isolation.nats_url,
        &isolation.stream,
        0,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(records(envelopes), vec![]);
}

#[tokio::test]
async fn without_a_secret_unsigned_requests_render_for_the_claimed_shop() {
    let app = spawn_app(None, |settings| settings.shopify_api_secret = None).await;
    let body = request(&["a"]).body.to_string().into_bytes();
    let response = app
        .post("shop=dev-shop.myshopify.com", body, "req-dev")
        .await;
    assert_eq!(response.status(), 200);
    app.stop().await;
}
