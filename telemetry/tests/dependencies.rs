//! The SDK is only the SDK: a library user compiles no command-line parser, HTTP server
//! or log subscriber for it. Those are `service-kit`'s `cli` and `http-server`
//! features, which only the services turn on.

use test_support::dependencies::normal_dependencies;

#[test]
fn the_sdk_has_no_cli_or_http_server_crates_in_its_dependency_tree() {
    let tree = normal_dependencies("telemetry");
    assert!(tree.contains("service-kit"), "unexpected tree:\n{tree:?}");
    for name in [
        "clap",
        "axum",
        "hyper",
        "hyper-util",
        "tower",
        "tracing-subscriber",
    ] {
        assert!(!tree.contains(name), "{name} in the SDK's tree:\n{tree:?}");
    }
}
