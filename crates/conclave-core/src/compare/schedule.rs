//! How a side-by-side run is laid out on the machine: which columns share a worker, how
//! many workers run at once, and with how many threads each.
//!
//! Rules (all decided here, before anything loads, so the plan can be shown up front):
//! - One worker ("lane") per distinct (model file, context length). Columns of the same
//!   model share it and run one after another on it: a worker serves one request at a time,
//!   and a second copy would duplicate the KV cache and compute buffers and split the cores
//!   further, while the same model answering twice is the case where the user is least
//!   waiting on a race.
//! - At most `cores` lanes run at once, each with `cores / concurrency` threads, so the
//!   total never oversubscribes the physical cores (llama.cpp threads spin; two workers
//!   fighting over one core are slower than taking turns).
//! - Memory: the lanes that run at once must fit together. The concurrency is the largest
//!   `k` for which the `k` biggest fit estimates (`models::fit`) sum to at most the budget
//!   (an explicit limit, else `CONCLAVE_MEMORY_LIMIT`, else `MemAvailable`). When only one
//!   fits, lanes run one after another and the plan says so (`sequential`, `reason`).

use std::path::PathBuf;

use crate::models::{estimate_fit, mem_available_bytes, FitRequest};
use crate::settings::DEFAULT_N_CTX;

/// Environment variable capping the memory a side-by-side run may plan for (bytes, or with
/// a K/M/G suffix). Lets tests and small machines force the sequential fallback.
pub const MEMORY_LIMIT_ENV: &str = "CONCLAVE_MEMORY_LIMIT";

/// One worker and the columns it answers, in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub model: PathBuf,
    /// Resolved context length (never 0).
    pub n_ctx: u32,
    /// A model drafting for this one in the same worker (columns with another draft
    /// model, or none, need their own worker).
    pub draft_model: Option<PathBuf>,
    pub columns: Vec<usize>,
    /// Fit estimate for this model at `n_ctx`; 0 when its header could not be read (the
    /// load will then fail with the real reason, on that column only).
    pub estimate_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub lanes: Vec<Lane>,
    /// Lanes running at once.
    pub concurrency: usize,
    pub threads_per_worker: u32,
    /// No two columns run at the same time.
    pub sequential: bool,
    /// Why the run is not fully concurrent, when it is not.
    pub reason: Option<String>,
    /// The sum of the estimates of the lanes that may run at once.
    pub memory_needed_bytes: u64,
    pub memory_budget_bytes: Option<u64>,
}

/// The context length a worker gets for `requested` (0 = the model's default), the same
/// rule as `Engine::load`, so estimates match what loads.
pub fn resolve_n_ctx(model: &std::path::Path, requested: u32) -> u32 {
    if requested > 0 {
        return requested;
    }
    crate::gguf::read_header(model)
        .ok()
        .and_then(|h| h.context_length())
        .map_or(DEFAULT_N_CTX, |c| {
            u32::try_from(c.min(u64::from(DEFAULT_N_CTX))).unwrap_or(DEFAULT_N_CTX)
        })
}

/// What puts two columns in one worker: the same model, context length and draft model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneKey {
    pub model: PathBuf,
    /// Resolved context length.
    pub n_ctx: u32,
    pub draft_model: Option<PathBuf>,
}

/// Groups columns into lanes by their key, in order of first appearance.
pub fn lanes_for(columns: &[LaneKey]) -> Vec<Lane> {
    let mut lanes: Vec<Lane> = Vec::new();
    for (i, key) in columns.iter().enumerate() {
        match lanes.iter_mut().find(|l| {
            l.model == key.model && l.n_ctx == key.n_ctx && l.draft_model == key.draft_model
        }) {
            Some(l) => l.columns.push(i),
            None => lanes.push(Lane {
                model: key.model.clone(),
                n_ctx: key.n_ctx,
                draft_model: key.draft_model.clone(),
                columns: vec![i],
                estimate_bytes: 0,
            }),
        }
    }
    lanes
}

/// Fills in each lane's memory estimate from its GGUF headers (a draft model's with its
/// own context of the same length).
pub fn estimate_lanes(lanes: &mut [Lane]) {
    let estimate = |model: &std::path::Path, n_ctx: u32| match crate::gguf::read_header(model) {
        Ok(h) => {
            let req = FitRequest {
                n_ctx: u64::from(n_ctx),
                ..FitRequest::default()
            };
            estimate_fit(&h, None, &req, None).total_bytes
        }
        Err(e) => {
            tracing::warn!("no fit estimate for {}: {e}", model.display());
            0
        }
    };
    for lane in lanes {
        lane.estimate_bytes = estimate(&lane.model, lane.n_ctx)
            + lane
                .draft_model
                .as_deref()
                .map_or(0, |d| estimate(d, lane.n_ctx));
    }
}

/// The memory budget: `explicit`, else `CONCLAVE_MEMORY_LIMIT`, else `MemAvailable`.
pub fn memory_budget(explicit: Option<u64>) -> Option<u64> {
    explicit
        .or_else(|| {
            std::env::var(MEMORY_LIMIT_ENV)
                .ok()
                .and_then(|v| parse_bytes(&v))
        })
        .or_else(mem_available_bytes)
}

/// "1048576", "512K", "300M", "2G" (binary units).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

pub struct ScheduleInput {
    pub lanes: Vec<Lane>,
    pub n_columns: usize,
    pub cores: usize,
    /// Threads for `k` workers at once; `metrics::threads_per_worker` on the real machine.
    pub threads_for: fn(usize, usize) -> u32,
    pub memory_budget: Option<u64>,
    pub force_sequential: bool,
}

/// `cores / busy`, at least 1: the same split as `metrics::threads_per_worker`, for a
/// given core count.
pub fn split_threads(cores: usize, busy: usize) -> u32 {
    u32::try_from((cores / busy.max(1)).max(1)).unwrap_or(1)
}

pub fn schedule(input: ScheduleInput) -> Schedule {
    let ScheduleInput {
        lanes,
        n_columns,
        cores,
        threads_for,
        memory_budget,
        force_sequential,
    } = input;
    let cores = cores.max(1);
    let mut sizes: Vec<u64> = lanes.iter().map(|l| l.estimate_bytes).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let need = |k: usize| sizes.iter().take(k).fold(0u64, |s, b| s.saturating_add(*b));

    let max_by_cores = lanes.len().min(cores).max(1);
    let mut reason = None;
    let concurrency = if force_sequential {
        reason = Some("one after another, as requested".to_owned());
        1
    } else {
        let k = match memory_budget {
            Some(budget) => (1..=max_by_cores)
                .rev()
                .find(|&k| need(k) <= budget)
                .unwrap_or(1),
            None => max_by_cores,
        };
        if k < max_by_cores {
            reason = Some(format!(
                "the models need {} together but the memory limit is {}: {}",
                human_bytes(need(max_by_cores)),
                human_bytes(memory_budget.unwrap_or(0)),
                if k == 1 {
                    "running them one after another".to_owned()
                } else {
                    format!("running {k} at a time")
                }
            ));
        } else if lanes.len() > cores {
            reason = Some(format!(
                "{} models on {cores} physical core{}: {} at a time",
                lanes.len(),
                if cores == 1 { "" } else { "s" },
                max_by_cores
            ));
        }
        k
    };
    if lanes.len() == 1 && n_columns > 1 && reason.is_none() {
        reason = Some(
            "every column uses the same model, whose worker answers one request at a time"
                .to_owned(),
        );
    }
    let sequential = n_columns > 1 && (concurrency == 1 || lanes.len() == 1);
    Schedule {
        memory_needed_bytes: need(concurrency),
        memory_budget_bytes: memory_budget,
        threads_per_worker: threads_for(cores, concurrency),
        concurrency,
        sequential,
        reason,
        lanes,
    }
}

pub fn human_bytes(b: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = b as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(name: &str, cols: &[usize], mib: u64) -> Lane {
        Lane {
            model: PathBuf::from(name),
            n_ctx: 4096,
            draft_model: None,
            columns: cols.to_vec(),
            estimate_bytes: mib << 20,
        }
    }

    fn input(lanes: Vec<Lane>, cores: usize, budget_mib: Option<u64>) -> ScheduleInput {
        let n_columns = lanes.iter().map(|l| l.columns.len()).sum();
        ScheduleInput {
            lanes,
            n_columns,
            cores,
            threads_for: split_threads,
            memory_budget: budget_mib.map(|m| m << 20),
            force_sequential: false,
        }
    }

    #[test]
    fn same_model_and_context_share_a_lane() {
        let a = PathBuf::from("a.gguf");
        let b = PathBuf::from("b.gguf");
        let key = |model: &PathBuf, n_ctx: u32, draft: Option<&PathBuf>| LaneKey {
            model: model.clone(),
            n_ctx,
            draft_model: draft.cloned(),
        };
        let lanes = lanes_for(&[
            key(&a, 4096, None),
            key(&b, 4096, None),
            key(&a, 4096, None),
            key(&a, 2048, None),
            key(&a, 4096, Some(&b)),
            key(&a, 4096, Some(&b)),
        ]);
        assert_eq!(lanes.len(), 4);
        assert_eq!(lanes[0].columns, [0, 2]);
        assert_eq!(lanes[1].columns, [1]);
        assert_eq!(lanes[2].columns, [3]);
        assert_eq!(lanes[3].columns, [4, 5]);
        assert_eq!(lanes[3].draft_model.as_ref(), Some(&b));
    }

    #[test]
    fn two_models_on_two_cores_run_together_with_one_thread_each() {
        let s = schedule(input(
            vec![lane("a", &[0], 200), lane("b", &[1], 300)],
            2,
            Some(10_000),
        ));
        assert_eq!(
            (s.concurrency, s.threads_per_worker, s.sequential),
            (2, 1, false)
        );
        assert!(s.reason.is_none());
    }

    #[test]
    fn more_models_than_cores_take_turns_without_oversubscribing() {
        let lanes = vec![lane("a", &[0], 1), lane("b", &[1], 1), lane("c", &[2], 1)];
        let s = schedule(input(lanes, 2, None));
        assert_eq!(
            (s.concurrency, s.threads_per_worker, s.sequential),
            (2, 1, false)
        );
        assert!(s
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("2 at a time")));
        let s = schedule(input(vec![lane("a", &[0], 1), lane("b", &[1], 1)], 8, None));
        assert_eq!((s.concurrency, s.threads_per_worker), (2, 4));
    }

    #[test]
    fn low_memory_falls_back_to_sequential() {
        let s = schedule(input(
            vec![lane("a", &[0], 200), lane("b", &[1], 300)],
            2,
            Some(400),
        ));
        assert_eq!(
            (s.concurrency, s.threads_per_worker, s.sequential),
            (1, 2, true)
        );
        assert!(
            s.reason
                .as_deref()
                .is_some_and(|r| r.contains("one after another")),
            "{s:?}"
        );
        // Three lanes, room for the two biggest: two at a time.
        let lanes = vec![
            lane("a", &[0], 100),
            lane("b", &[1], 300),
            lane("c", &[2], 200),
        ];
        let s = schedule(input(lanes, 4, Some(550)));
        assert_eq!((s.concurrency, s.sequential), (2, false));
    }

    #[test]
    fn one_model_for_all_columns_is_sequential() {
        let s = schedule(input(vec![lane("a", &[0, 1], 100)], 2, None));
        assert!(s.sequential);
        assert_eq!(s.threads_per_worker, 2);
    }

    #[test]
    fn byte_sizes_parse() {
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("300M"), Some(300 << 20));
        assert_eq!(parse_bytes(" 2g "), Some(2 << 30));
        assert_eq!(parse_bytes("lots"), None);
    }
}
