//! History benchmark: `cargo bench -p conclave-core --bench history -- [CONVERSATIONS] [MESSAGES]`
//! (defaults 10000 and 1000000). Fills a temporary database and prints a table.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; only the numbers are ours.
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let conversations = numbers.first().copied().unwrap_or(10_000);
    let messages = numbers.get(1).copied().unwrap_or(1_000_000);
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    match conclave_core::history::bench::run(
        &dir.path().join("bench.sqlite3"),
        conversations,
        messages,
    )
    .await
    {
        Ok(report) => {
            print!("{}", report.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}
