//! `sqlx::migrate!` embeds `migrations/` at compile time, but on stable Rust a proc
//! macro cannot tell cargo which files it read: without this, a new migration file
//! leaves a stale binary that silently runs the old schema.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
