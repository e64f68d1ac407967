//! Property test: the header reader never panics, never hangs and never trusts a length, on
//! mutated real headers (byte flips, overwritten words, truncations) and on mutated small
//! complete files (where some mutations still parse).
#![allow(clippy::unwrap_used)]

#[path = "gguf_builder.rs"]
mod gguf_builder;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use conclave_core::gguf::read_header;
use conclave_core::ErrorCode;
use gguf_builder::{real_model, Builder, SMOL};
use proptest::prelude::*;

fn real_prefix() -> Option<&'static Vec<u8>> {
    static P: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    P.get_or_init(|| {
        let p = real_model(SMOL)?;
        let mut b = std::fs::read(p).ok()?;
        b.truncate(64 * 1024);
        Some(b)
    })
    .as_ref()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    /// Overwrite 8 bytes with a value (lengths and counts live in u64s).
    Word(usize, u64),
    Truncate(usize),
}

fn mutations(max_len: usize) -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        5 => (0..max_len, 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        3 => (0..max_len, prop_oneof![
            Just(0u64), Just(u64::MAX), Just(1u64 << 32), Just(1u64 << 62),
            0u64..1_000_000, any::<u64>()
        ]).prop_map(|(i, v)| Mutation::Word(i, v)),
        1 => (0..max_len).prop_map(Mutation::Truncate),
    ];
    prop::collection::vec(one, 1..6)
}

fn apply(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        match *m {
            Mutation::Flip(i, x) => {
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= x;
                }
            }
            Mutation::Word(i, v) => {
                let end = (i + 8).min(bytes.len());
                if i < end {
                    bytes[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
                }
            }
            Mutation::Truncate(n) => bytes.truncate(n),
        }
    }
    bytes
}

fn check(bytes: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, bytes).unwrap();
    let t = Instant::now();
    let ok = match read_header(&p) {
        Ok(h) => {
            assert!(h.data_offset <= h.file_size);
            let _ = (h.parameter_count(), h.file_type(), h.context_length());
            true
        }
        Err(e) => {
            assert!(!e.code().is_empty());
            assert!(
                e.to_string().contains("m.gguf"),
                "error names the file: {e}"
            );
            false
        }
    };
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "slow on a {}-byte input",
        bytes.len()
    );
    ok
}

fn run(name: &str, max_len: usize, cases: u32, input: impl Fn() -> Option<Vec<u8>>) {
    let Some(base) = input() else { return };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let ran = AtomicUsize::new(0);
    let parsed = AtomicUsize::new(0);
    runner
        .run(&mutations(max_len), |muts| {
            if check(&apply(base.clone(), &muts)) {
                parsed.fetch_add(1, Ordering::Relaxed);
            }
            ran.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let ran = ran.load(Ordering::Relaxed);
    println!(
        "{name}: {ran} mutated inputs ran ({} still parsed)",
        parsed.load(Ordering::Relaxed)
    );
    assert!(ran >= cases as usize);
}

#[test]
fn mutated_real_header_prefix() {
    run("real 64 KiB header prefix", 64 * 1024, 5000, || {
        real_prefix().cloned()
    });
}

#[test]
fn mutated_small_complete_file() {
    run("small complete file", 1024, 5000, || {
        Some(Builder::tiny().bytes())
    });
}
