//! The memory estimate against the real worker: for both test models at two context
//! sizes, the estimated total must be within 20 % of the worker's measured peak RSS once it
//! has answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conclave_core::engine::{ChatRequest, LoadOptions};
use conclave_core::gguf::read_header;
use conclave_core::models::{estimate_fit, FitRequest};
use conclave_core::{Message, Role, SamplingParams};
use conclave_tests::{collect, engine, model, GEMMA3, SMOLLM2};

#[tokio::test]
async fn fit_estimate_is_within_20_percent_of_measured_rss() {
    let e = engine();
    let mut report = Vec::new();
    for name in [SMOLLM2, GEMMA3] {
        let path = model(name);
        let header = read_header(&path).unwrap();
        for n_ctx in [512u32, 4096] {
            let est = estimate_fit(
                &header,
                None,
                &FitRequest {
                    n_ctx: u64::from(n_ctx),
                    ..FitRequest::default()
                },
                None,
            );
            let m = e
                .load(
                    &path,
                    LoadOptions {
                        n_ctx,
                        threads: Some(1),
                        ..Default::default()
                    },
                    |_| {},
                )
                .await
                .unwrap();
            // A prompt of a few hundred tokens, so the prompt path is exercised too.
            let text = "The quick brown fox jumps over the lazy dog. ".repeat(if n_ctx > 512 {
                40
            } else {
                20
            });
            let req = ChatRequest {
                messages: vec![Message::new(Role::User, text)],
                params: SamplingParams {
                    temperature: 0.0,
                    max_tokens: 16,
                    ..SamplingParams::default()
                },
                ..ChatRequest::default()
            };
            let a = collect(m.chat(req).await.unwrap()).await;
            assert!(a.error.is_none(), "{a:?}");
            let rss = a.metrics.peak_rss_bytes as f64;
            let ratio = est.total_bytes as f64 / rss;
            report.push(format!(
                "{name} @ {n_ctx}: estimate {:.1} MiB, measured {:.1} MiB, ratio {ratio:.3}",
                est.total_bytes as f64 / 1048576.0,
                rss / 1048576.0
            ));
            m.unload().await;
        }
    }
    println!("{}", report.join("\n"));
    for line in &report {
        let ratio: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((0.8..=1.2).contains(&ratio), "{line}\nall: {report:#?}");
    }
}
