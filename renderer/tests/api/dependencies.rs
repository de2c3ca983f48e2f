//! The renderer must never touch a database: its normal dependency tree has no driver.

use test_support::dependencies::normal_dependencies;

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
    let tree = normal_dependencies("renderer");
    assert!(tree.contains("telemetry"), "unexpected tree:\n{tree:?}");
    for name in DATABASE_CRATES {
        assert!(
            !tree.contains(name),
            "database crate {name} in the renderer's tree:\n{tree:?}"
        );
    }
}
