//! The collector produces no telemetry: it shares the NATS plumbing with the SDK through
//! `service-kit`, not the SDK itself (only its tests use the SDK, to publish).

use test_support::dependencies::normal_dependencies;

#[test]
fn the_collector_does_not_depend_on_the_sdk() {
    let tree = normal_dependencies("telemetry-collector");
    assert!(tree.contains("service-kit"), "unexpected tree:\n{tree:?}");
    assert!(
        !tree.contains("telemetry"),
        "the SDK in the collector's tree:\n{tree:?}"
    );
}
