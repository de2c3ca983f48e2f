use std::time::Duration;

use serde_json::Value;
use test_support::Isolation;

use crate::helpers::{
    recorded, request, signed, signed_query, signed_query_at, spawn_app, unix_now, SECRET, SHOP,
};

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
    assert_eq!(
        recorded(&isolation, 0, Duration::from_secs(2)).await,
        vec![]
    );
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

/// Posts a one-variant render with `query`; the status and the answer's JSON.
async fn post_with(app: &crate::helpers::TestApp, query: &str, request_id: &str) -> (u16, Value) {
    let body = request(&["a"]).body.to_string().into_bytes();
    let response = app.post(query, body, request_id).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_signed_query_outside_the_timestamp_window_gets_401_naming_it() {
    let isolation = Isolation::new();
    let app = spawn_app(Some(&isolation), |_| {}).await;
    let now = unix_now();
    for (timestamp, error) in [
        (now - 91, "stale_timestamp"),
        (now - 86_400 * 365, "stale_timestamp"),
        (now + 91, "future_timestamp"),
    ] {
        let query = signed_query_at(SHOP, SECRET, timestamp);
        let (status, answer) = post_with(&app, &query, "req-old").await;
        assert_eq!(status, 401, "{timestamp}: {answer}");
        assert_eq!(answer["error"], error, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("90 s"),
            "{answer}"
        );
    }
    for (query, error) in [
        (signed(&format!("shop={SHOP}"), SECRET), "invalid_timestamp"),
        (
            signed(&format!("shop={SHOP}&timestamp=soon"), SECRET),
            "invalid_timestamp",
        ),
        (
            signed(
                &format!("shop={SHOP}&timestamp={now}&timestamp={now}"),
                SECRET,
            ),
            "invalid_timestamp",
        ),
    ] {
        let (status, answer) = post_with(&app, &query, "req-no-time").await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["error"], error, "{answer}");
    }
    // Inside the window, either side of now.
    for timestamp in [now - 60, now + 30] {
        let query = signed_query_at(SHOP, SECRET, timestamp);
        assert_eq!(post_with(&app, &query, "req-fresh").await.0, 200);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_timestamp_window_is_a_setting() {
    let app = spawn_app(None, |settings| {
        settings.limits.shopify_proxy_max_age = Duration::from_secs(600);
    })
    .await;
    let query = signed_query_at(SHOP, SECRET, unix_now() - 500);
    assert_eq!(post_with(&app, &query, "req-500s").await.0, 200);
    let query = signed_query_at(SHOP, SECRET, unix_now() - 700);
    assert_eq!(post_with(&app, &query, "req-700s").await.0, 401);
    app.stop().await;
}

#[tokio::test]
async fn a_signed_query_must_name_exactly_one_myshopify_shop() {
    let isolation = Isolation::new();
    let app = spawn_app(Some(&isolation), |_| {}).await;
    let now = unix_now();
    for shop_params in [
        // Correctly signed, but two shops: which one is it for?
        "shop=victim.myshopify.com&shop=attacker.myshopify.com".to_owned(),
        "shop=attacker.myshopify.com&shop=victim.myshopify.com".to_owned(),
        "shop=evil.example.com".to_owned(),
        "shop=victim.myshopify.com.evil.example".to_owned(),
        "shop=.myshopify.com".to_owned(),
        "shop=a%20b.myshopify.com".to_owned(),
        "shop=".to_owned(),
        format!("shop={}.myshopify.com", "a".repeat(300)),
    ] {
        let query = signed(&format!("{shop_params}&timestamp={now}"), SECRET);
        let (status, answer) = post_with(&app, &query, "req-shop").await;
        assert_eq!(status, 400, "{shop_params}: {answer}");
        assert_eq!(answer["error"], "invalid_shop", "{answer}");
        assert!(answer["message"].as_str().unwrap().len() < 512, "{answer}");
    }
    let query = signed(&format!("timestamp={now}"), SECRET);
    let (status, answer) = post_with(&app, &query, "req-no-shop").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_shop"))
    );

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("renderer_requests_total{outcome=\"bad_request\"} 9"),
        "{metrics}"
    );
    // No shop could be trusted, so nothing was recorded.
    app.stop().await;
    assert_eq!(
        recorded(&isolation, 0, Duration::from_secs(2)).await,
        vec![]
    );
}

/// Shopify signs `key=value` pairs concatenated without a separator, so the signature
/// of `shop=X&timestamp=T` (the text `shop=Xtimestamp=T`) is also the signature of the
/// single parameter `shop` with the value `Xtimestamp=T`.
#[tokio::test]
async fn a_signature_does_not_carry_over_to_a_regrouped_query() {
    let app = spawn_app(None, |_| {}).await;
    let now = unix_now();
    let signature = renderer::signature::sign(&format!("shop={SHOP}&timestamp={now}"), SECRET);
    for regrouped in [
        format!("shop={SHOP}timestamp%3D{now}&signature={signature}"),
        format!("shop%3D{SHOP}timestamp={now}&signature={signature}"),
    ] {
        let (status, answer) = post_with(&app, &regrouped, "req-regrouped").await;
        assert_eq!(status, 400, "{regrouped}: {answer}");
        assert_eq!(answer["error"], "ambiguous_query", "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains('='),
            "{answer}"
        );
    }
    app.stop().await;
}
