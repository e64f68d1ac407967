//! Streams joined to a frame's worth: one message per display frame instead of one per
//! token, for consumers that pay per message. In the desktop app each IPC message is a
//! script evaluated in the web process and a wake-up of the app's main thread; at 100+
//! tokens a second that CPU comes out of the worker's decoding on a small machine, and the
//! page applies deltas once per animation frame anyway.
//!
//! Order is kept. Text deltas of the same stream are joined; anything else (start, done,
//! error) goes out at once, after the text before it. The first delta after a quiet spell
//! goes out at once too, so the first token is never held back.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::compare::{CompareEvent, CompareOutput};
use crate::events::ChatEvent;

/// The display frame of a 60 Hz screen.
pub const FRAME: Duration = Duration::from_millis(16);

/// How often the app's page gets new text while an answer streams. Each update costs the
/// web process a repaint of the changed lines, and on a machine without a GPU that
/// repaint, not the text, is what the page spends (about 10 ms a frame on the 2-core build
/// machines, measured with bench/app-stream.sh). Text arriving ten times a second still
/// reads as a live stream; at 60 a second the page took a core away from the model.
pub const UI_FRAME: Duration = Duration::from_millis(100);

/// The page's update interval while the model decodes with a thread on every CPU. Each
/// update costs the page about 20 ms of CPU whatever its size (layout, repaint and the blit
/// into the window), and with no CPU to spare that time stops one of the model's threads,
/// and the others wait for it at the next barrier. Measured with bench/app-stream.sh on a
/// 2-core machine, 2 threads, a 1,500-token answer, in one run: at 100 ms the app streamed
/// at 0.79× `conclave chat` (page CPU 1.8 ms per token), at 250 ms at 0.98× (0.7 ms).
pub const BUSY_UI_FRAME: Duration = Duration::from_millis(250);

/// `CONCLAVE_UI_FRAME_MS` where set (bench/app-stream.sh compares values).
fn frame_override() -> Option<Duration> {
    static FRAME_MS: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *FRAME_MS.get_or_init(|| {
        std::env::var("CONCLAVE_UI_FRAME_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
    })
}

/// The update interval for an answer decoded with `threads` threads on a machine with
/// `cpus` logical CPUs: [`UI_FRAME`] while a CPU is left for the page, [`BUSY_UI_FRAME`]
/// when the model takes them all. `CONCLAVE_UI_FRAME_MS` wins.
pub fn ui_frame_for(threads: u32, cpus: usize) -> Duration {
    frame_override().unwrap_or(if threads as usize >= cpus {
        BUSY_UI_FRAME
    } else {
        UI_FRAME
    })
}

/// An event that may be joined with the one after it.
pub trait Delta: Sized {
    /// Appends `next` when both are text of the same stream; gives it back otherwise.
    fn absorb(&mut self, next: Self) -> Option<Self>;
    /// True for text that may wait for the rest of its frame.
    fn can_wait(&self) -> bool;
}

impl Delta for ChatEvent {
    fn absorb(&mut self, next: Self) -> Option<Self> {
        match (self, next) {
            (
                ChatEvent::Token { text, tokens },
                ChatEvent::Token {
                    text: more,
                    tokens: n,
                },
            )
            | (
                ChatEvent::Reasoning { text, tokens },
                ChatEvent::Reasoning {
                    text: more,
                    tokens: n,
                },
            ) => {
                text.push_str(&more);
                *tokens += n;
                None
            }
            (_, next) => Some(next),
        }
    }

    fn can_wait(&self) -> bool {
        matches!(self, ChatEvent::Token { .. } | ChatEvent::Reasoning { .. })
    }
}

impl Delta for CompareOutput {
    fn absorb(&mut self, next: Self) -> Option<Self> {
        match (self, next) {
            (
                CompareOutput::Column(CompareEvent { column, event }),
                CompareOutput::Column(more),
            ) if *column == more.column => event.absorb(more.event).map(|event| {
                CompareOutput::Column(CompareEvent {
                    column: more.column,
                    event,
                })
            }),
            (_, next) => Some(next),
        }
    }

    fn can_wait(&self) -> bool {
        matches!(self, CompareOutput::Column(c) if c.event.can_wait())
    }
}

/// The sending side: cheap, never blocks, and keeps working (as a no-op) once the
/// forwarding task has ended.
pub struct FrameSender<T>(mpsc::UnboundedSender<T>);

impl<T> Clone for FrameSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> FrameSender<T> {
    pub fn send(&self, event: T) {
        let _ = self.0.send(event);
    }
}

/// Starts a task (on the current tokio runtime) that hands `sink` what is sent, joined to at
/// most one batch per `frame`. Ends when every sender is dropped, after the last batch.
pub fn per_frame<T: Delta + Send + 'static>(
    frame: Duration,
    mut sink: impl FnMut(T) + Send + 'static,
) -> FrameSender<T> {
    let (tx, mut rx) = mpsc::unbounded_channel::<T>();
    tokio::spawn(async move {
        let mut last_flush: Option<Instant> = None;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let deadline = last_flush.map_or_else(Instant::now, |t| t + frame);
            // Collect until the frame is over or something arrives that must not wait.
            while batch.last().is_some_and(Delta::can_wait) {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(next)) => push(&mut batch, next),
                    Ok(None) | Err(_) => break,
                }
            }
            // Whatever is already queued joins this batch rather than waiting a frame.
            while let Ok(next) = rx.try_recv() {
                push(&mut batch, next);
            }
            for event in batch {
                sink(event);
            }
            last_flush = Some(Instant::now());
        }
    });
    FrameSender(tx)
}

fn push<T: Delta>(batch: &mut Vec<T>, next: T) {
    let rest = match batch.last_mut() {
        Some(last) => last.absorb(next),
        None => Some(next),
    };
    if let Some(next) = rest {
        batch.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Metrics, StopReason, Usage};
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_page_updates_less_often_when_the_model_takes_every_cpu() {
        if std::env::var_os("CONCLAVE_UI_FRAME_MS").is_some() {
            return;
        }
        assert_eq!(ui_frame_for(2, 2), BUSY_UI_FRAME);
        assert_eq!(ui_frame_for(8, 4), BUSY_UI_FRAME);
        assert_eq!(ui_frame_for(1, 2), UI_FRAME);
        assert_eq!(ui_frame_for(8, 16), UI_FRAME);
        assert!(BUSY_UI_FRAME > UI_FRAME);
    }

    fn token(t: &str) -> ChatEvent {
        ChatEvent::token(t)
    }

    fn collect() -> (
        Arc<Mutex<Vec<ChatEvent>>>,
        impl FnMut(ChatEvent) + Send + 'static,
    ) {
        let seen: Arc<Mutex<Vec<ChatEvent>>> = Arc::default();
        let s = seen.clone();
        (seen, move |e| s.lock().expect("lock").push(e))
    }

    #[tokio::test(start_paused = true)]
    async fn joins_the_deltas_of_a_frame_and_keeps_order() {
        let (seen, sink) = collect();
        let tx = per_frame(FRAME, sink);
        tx.send(token("a")); // first: at once
        tokio::time::sleep(Duration::from_millis(1)).await;
        for t in ["b", "c", "d"] {
            tx.send(token(t));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tx.send(ChatEvent::reasoning("r"));
        tx.send(token("e"));
        tx.send(ChatEvent::Done {
            stop_reason: StopReason::Eos,
            usage: Usage::default(),
            metrics: Metrics::default(),
        });
        drop(tx);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen[0], token("a"));
        // Joined text still counts its tokens: the page's live counts and speeds use them.
        assert_eq!(
            seen[1],
            ChatEvent::Token {
                text: "bcd".into(),
                tokens: 3
            }
        );
        assert_eq!(
            seen[2],
            ChatEvent::Reasoning {
                text: "r".into(),
                tokens: 1
            }
        );
        assert_eq!(seen[3], token("e"));
        assert!(matches!(seen[4], ChatEvent::Done { .. }));
        assert_eq!(seen.len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn sends_at_most_one_batch_per_frame_while_text_streams() {
        let (seen, sink) = collect();
        let tx = per_frame(FRAME, sink);
        // 200 tokens a second for one second.
        for i in 0..200 {
            tx.send(token(&format!("{i} ")));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(tx);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = seen.lock().expect("lock").clone();
        let text: String = seen
            .iter()
            .map(|e| match e {
                ChatEvent::Token { text, .. } => text.as_str(),
                _ => "",
            })
            .collect();
        let expected: String = (0..200).map(|i| format!("{i} ")).collect();
        assert_eq!(text, expected);
        let counted: u32 = seen
            .iter()
            .map(|e| match e {
                ChatEvent::Token { tokens, .. } => *tokens,
                _ => 0,
            })
            .sum();
        assert_eq!(counted, 200, "every joined token is counted");
        assert!(
            seen.len() <= 1000 / 16 + 2,
            "{} batches for one second",
            seen.len()
        );
        assert!(seen.len() >= 1000 / 16 / 2, "{} batches", seen.len());
    }

    #[tokio::test(start_paused = true)]
    async fn compare_columns_are_joined_apart() {
        let seen: Arc<Mutex<Vec<CompareOutput>>> = Arc::default();
        let s = seen.clone();
        let tx = per_frame(FRAME, move |e| s.lock().expect("lock").push(e));
        let col = |column, t: &str| {
            CompareOutput::Column(CompareEvent {
                column,
                event: ChatEvent::Token {
                    text: t.into(),
                    tokens: u32::try_from(t.len()).unwrap_or(u32::MAX),
                },
            })
        };
        tx.send(col(0, "x"));
        tokio::time::sleep(Duration::from_millis(1)).await;
        for (c, t) in [(0, "a"), (0, "b"), (1, "c"), (1, "d"), (0, "e")] {
            tx.send(col(c, t));
        }
        drop(tx);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            vec![col(0, "x"), col(0, "ab"), col(1, "cd"), col(0, "e")]
        );
    }
}
