//! What a package's normal (non-dev) dependency tree holds, for tests that keep a
//! layering rule: the renderer has no database driver, the SDK no command-line or
//! HTTP-server crates, the collector no SDK.

use std::collections::BTreeSet;
use std::process::Command;

/// The names of every crate in `package`'s normal dependency tree, `package` included,
/// as `cargo tree -e normal` lists them. Panics with cargo's message if it fails.
pub fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}
