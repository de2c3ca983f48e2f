//! The renderer must never touch a database: its normal dependency tree has no driver.

const DATABASE_CRATES: [&str; 10] = [
    "sqlx",
    "sqlx-core",
    "postgres",
    "tokio-postgres",
    "rusqlite",
    "libsqlite3-sys",
    "diesel",
    "mysql",
    "mysql_async",
    "sea-orm",
];

#[test]
fn the_renderer_has_no_database_driver_in_its_dependency_tree() {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree", "-p", "renderer", "-e", "normal", "--prefix", "none", "--format", "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    assert!(tree.contains("telemetry "), "unexpected tree:\n{tree}");
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        assert!(
            !DATABASE_CRATES.contains(&name),
            "database crate {name} in the renderer's tree:\n{tree}"
        );
    }
}
