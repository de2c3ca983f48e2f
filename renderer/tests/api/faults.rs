use std::collections::BTreeMap;
use std::time::Duration;

use renderer::config::{LocalSettings, ProviderSettings};
use renderer::providers::local::{Fault, LocalProvider};
use serde_json::Value;
use telemetry_proto::v1::envelope::Body;
use telemetry_proto::v1::{ErrorCode, RunStatus, VariantStatus};
use test_support::Isolation;

use crate::helpers::{recorded, request, spawn_app};

const VARIANTS: [&str; 4] = ["a", "b", "c", "d"];

fn faulty(seed: u64) -> LocalSettings {
    LocalSettings {
        failure_rate: 0.3,
        timeout_rate: 0.3,
        seed,
        ..Default::default()
    }
}

/// Most renders tried before one mixes a success, a failure and a hang: at these rates
/// about 4 runs in 10 do, so 40 tries all missing is a ~1e-9 event.
const MAX_TRIES: usize = 40;

/// The outcome the local provider drew for each variant of run `run_id`.
fn drawn(provider: &LocalProvider, run_id: &str) -> BTreeMap<&'static str, Fault> {
    VARIANTS
        .iter()
        .map(|v| (*v, provider.fault_for(run_id, v)))
        .collect()
}

fn run_status(faults: &BTreeMap<&'static str, Fault>) -> &'static str {
    let successes = faults.values().filter(|f| **f == Fault::None).count();
    match successes {
        0 => "failed",
        n if n == faults.len() => "complete",
        _ => "partial",
    }
}

#[tokio::test]
async fn timeouts_and_provider_failures_are_reported_and_the_run_is_partial() {
    let isolation = Isolation::new();
    let provider = LocalProvider::new(faulty(7));
    let app = spawn_app(Some(&isolation), |settings| {
        settings.provider = ProviderSettings::Local(faulty(7));
        settings.limits.variant_timeout = Duration::from_millis(400);
    })
    .await;
    // Faults are keyed on the run id, which the renderer picks: render until a run
    // mixes all three outcomes, checking every run's answer against the draw.
    let mut mixed = None;
    let mut runs = 0;
    while mixed.is_none() && runs < MAX_TRIES {
        runs += 1;
        let response = app
            .render(&request(&VARIANTS).body, &format!("req-faults-{runs}"))
            .await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        let run_id = answer["runId"].as_str().expect("runId").to_owned();
        let faults = drawn(&provider, &run_id);
        assert_eq!(answer["status"], run_status(&faults), "{answer}");
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
        let all_kinds = [Fault::None, Fault::Fail, Fault::Hang]
            .iter()
            .all(|f| faults.values().any(|g| g == f));
        if all_kinds {
            mixed = Some((run_id, faults));
        }
    }
    let (run_id, faults) = mixed.expect("a run mixing success, failure and hang");
    app.stop().await;

    let envelopes = recorded(&isolation, 11 * runs, Duration::from_secs(10)).await;
    let count = |fault| faults.values().filter(|f| **f == fault).count() as u32;
    let mut completed = None;
    let mut results = 0;
    for envelope in envelopes {
        match envelope.body {
            Some(Body::VariantResult(result)) if result.run_id == run_id => {
                results += 1;
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
            Some(Body::RunCompleted(run)) if run.run_id == run_id => completed = Some(run),
            _ => {}
        }
    }
    assert_eq!(results, VARIANTS.len());
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
    let envelopes = recorded(&isolation, 11, Duration::from_secs(10)).await;
    let completed = envelopes
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
