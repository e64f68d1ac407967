// `sqlx::migrate!` embeds the SQL files at compile time; without this, editing a migration
// would not rebuild the crate and the binary would carry a stale schema.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
