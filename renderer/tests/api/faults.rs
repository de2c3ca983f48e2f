use std::collections::BTreeMap;
use std::time::Duration;

use renderer::config::{LocalSettings, ProviderSettings};
use renderer::providers::local::{Fault, LocalProvider};
use serde_json::Value;
use telemetry_proto::v1::envelope::Body;
use telemetry_proto::v1::{ErrorCode, RunStatus, VariantStatus};
use test_support::Isolation;

use crate::helpers::{read_envelopes, records, request, spawn_app};

const VARIANTS: [&str; 4] = ["a", "b", "c", "d"];

fn faulty(seed: u64) -> LocalSettings {
    LocalSettings {
        failure_rate: 0.3,
        timeout_rate: 0.3,
        seed,
        ..Default::default()
    }
}

/// A seed under which the four variants include a success, a failure and a hang.
fn mixed_seed() -> (u64, BTreeMap<&'static str, Fault>) {
    (0..10_000)
        .map(|seed| {
            let provider = LocalProvider::new(faulty(seed));
            let faults: BTreeMap<_, _> = VARIANTS
                .iter()
                .map(|v| (*v, provider.fault_for(v)))
                .collect();
            (seed, faults)
        })
        .find(|(_, faults)| {
            [Fault::None, Fault::Fail, Fault::Hang]
                .iter()
                .all(|f| faults.values().any(|g| g == f))
        })
        .expect("some seed mixes outcomes")
}

#[tokio::test]
async fn timeouts_and_provider_failures_are_reported_and_the_run_is_partial() {
    let isolation = Isolation::new();
    let (seed, faults) = mixed_seed();
    let app = spawn_app(Some(&isolation), |settings| {
        settings.provider = ProviderSettings::Local(faulty(seed));
        settings.limits.variant_timeout = Duration::from_millis(400);
    })
    .await;
    let response = app.render(&request(&VARIANTS).body, "req-faults").await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "partial", "{answer}");
    let count = |fault| faults.values().filter(|f| **f == fault).count() as u32;
    for variant in answer["variants"].as_array().unwrap() {
        let id = variant["variantId"].as_str().unwrap();
        let (status, code) = match faults[id] {
            Fault::None => ("success", Value::Null),
            Fault::Fail => ("failed", "PROVIDER_ERROR".into()),
            Fault::Hang => ("timeout", "TIMEOUT".into()),
        };
        assert_eq!(variant["status"], status, "{variant}");
        assert_eq!(variant["errorCode"], code, "{variant}");
        if faults[id] == Fault::Hang {
            assert!(variant["latencyMs"].as_u64().unwrap() >= 400);
        }
        assert_eq!(variant["imageUrl"].is_null(), faults[id] != Fault::None);
    }
    app.stop().await;

    let envelopes = read_envelopes(
        &isolation.nats_url,
        &isolation.stream,
        11,
        Duration::from_secs(10),
    )
    .await;
    let mut completed = None;
    for envelope in records(envelopes) {
        match envelope.body {
            Some(Body::VariantResult(result)) => {
                let (status, code) = match faults[result.variant_id.as_str()] {
                    Fault::None => (VariantStatus::Success, ErrorCode::Unspecified),
                    Fault::Fail => (VariantStatus::Failed, ErrorCode::ProviderError),
                    Fault::Hang => (VariantStatus::Timeout, ErrorCode::Timeout),
                };
                assert_eq!(result.status, status as i32, "{result:?}");
                assert_eq!(result.error_code, code as i32, "{result:?}");
                assert_eq!(
                    result.error_message.is_empty(),
                    status == VariantStatus::Success
                );
                assert_eq!(
                    result.output_image_key.is_empty(),
                    status != VariantStatus::Success
                );
                assert_eq!(
                    result.output_image_hash.is_empty(),
                    status != VariantStatus::Success
                );
                assert!(!result.final_prompt_hash.is_empty());
            }
            Some(Body::RunCompleted(run)) => completed = Some(run),
            _ => {}
        }
    }
    let completed = completed.expect("RunCompleted on the stream");
    assert_eq!(completed.status, RunStatus::Partial as i32);
    assert_eq!(
        (
            completed.success_count,
            completed.fail_count,
            completed.timeout_count
        ),
        (count(Fault::None), count(Fault::Fail), count(Fault::Hang))
    );
}

#[tokio::test]
async fn a_run_whose_variants_all_fail_is_failed() {
    let isolation = Isolation::new();
    let app = spawn_app(Some(&isolation), |settings| {
        settings.provider = ProviderSettings::Local(LocalSettings {
            failure_rate: 0.5,
            timeout_rate: 0.5,
            ..Default::default()
        });
        settings.limits.variant_timeout = Duration::from_millis(200);
    })
    .await;
    let answer: Value = app
        .render(&request(&VARIANTS).body, "req-all-fail")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "failed", "{answer}");
    app.stop().await;
    let envelopes = read_envelopes(
        &isolation.nats_url,
        &isolation.stream,
        11,
        Duration::from_secs(10),
    )
    .await;
    let completed = records(envelopes)
        .into_iter()
        .find_map(|e| match e.body {
            Some(Body::RunCompleted(run)) => Some(run),
            _ => None,
        })
        .expect("RunCompleted on the stream");
    assert_eq!(completed.status, RunStatus::Failed as i32);
    assert_eq!(completed.success_count, 0);
    assert_eq!(completed.fail_count + completed.timeout_count, 4);
}
