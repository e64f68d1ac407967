//! IPC commands of the side-by-side screen and the leaderboard. Each converts its
//! arguments (catalog ids to model paths), calls `conclave_core::compare` or
//! `conclave_core::leaderboard`, and streams or returns what the core produced.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use conclave_core::compare::{
    self, ColumnDiff, CompareColumn, CompareOptions, CompareOutput, CompareRequest, RevealedColumn,
};
use conclave_core::frames;
use conclave_core::history::Vote;
use conclave_core::leaderboard::{self, Leaderboard};
use conclave_core::session::ChatSettings;
use serde::{Deserialize, Serialize};
use tauri::ipc::Channel;
use tauri::State;
use tokio::sync::Notify;
use ts_rs::TS;

use crate::commands::Shell;
use crate::error::{ApiError, ApiResult};

/// Runs in flight, by the handle id given to the UI, so `cancel_compare` can reach them.
/// A run removes itself when its stream ends.
#[derive(Default)]
pub struct CompareRuns {
    next: AtomicU64,
    running: Mutex<HashMap<String, Arc<Notify>>>,
}

impl CompareRuns {
    fn insert(&self, id: &str) -> Arc<Notify> {
        let stop = Arc::new(Notify::new());
        if let Ok(mut map) = self.running.lock() {
            map.insert(id.to_owned(), stop.clone());
        }
        stop
    }

    fn remove(&self, id: &str) {
        if let Ok(mut map) = self.running.lock() {
            map.remove(id);
        }
    }

    fn get(&self, id: &str) -> Option<Arc<Notify>> {
        self.running.lock().ok().and_then(|m| m.get(id).cloned())
    }
}

/// One column as the UI names it: a catalog id, not a path.
#[derive(Debug, Clone, Deserialize, TS)]
#[ts(rename = "CompareColumnRequest")]
pub struct CompareColumnDto {
    pub model_id: String,
    #[serde(default)]
    pub settings: ChatSettings,
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Deserialize, TS)]
#[ts(rename = "CompareRequest")]
pub struct CompareRequestDto {
    pub prompt: String,
    pub columns: Vec<CompareColumnDto>,
    #[serde(default)]
    pub options: CompareOptions,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "CompareStarted")]
pub struct CompareStartedDto {
    /// The handle for `cancel_compare`: the stored run's id, or a session-local one for a
    /// run that is not saved.
    pub handle: String,
    /// The stored run (what `vote_compare` takes); None with `no_save`.
    pub run_id: Option<String>,
    pub conversation_id: Option<String>,
    pub user_message_id: Option<String>,
}

#[tauri::command]
pub async fn start_compare(
    shell: State<'_, Shell>,
    runs: State<'_, Arc<CompareRuns>>,
    request: CompareRequestDto,
    on_event: Channel<CompareOutput>,
) -> ApiResult<CompareStartedDto> {
    let core = shell.core()?.clone();
    let ids: Vec<String> = request.columns.iter().map(|c| c.model_id.clone()).collect();
    let (paths, rpc) = shell
        .blocking(move |lib| {
            let catalog = lib.catalog();
            let paths = ids
                .iter()
                .map(|id| catalog.resolve(id).map(|e| e.path.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((paths, lib.rpc_servers()))
        })
        .await?;
    let columns = request
        .columns
        .into_iter()
        .zip(paths)
        .map(|(c, path)| CompareColumn {
            model: path,
            settings: c.settings,
            label: c.label,
        })
        .collect();
    let req = CompareRequest {
        prompt: request.prompt,
        columns,
        // The Remote devices from Settings take part as they do in a chat.
        options: CompareOptions {
            rpc,
            ..request.options
        },
    };
    let mut stream = compare::start(&core, req).await?;
    let handle = match stream.run_id() {
        Some(id) => id.to_owned(),
        None => format!("unsaved-{}", runs.next.fetch_add(1, Ordering::SeqCst)),
    };
    let started = CompareStartedDto {
        handle: handle.clone(),
        run_id: stream.run_id().map(str::to_owned),
        conversation_id: stream.conversation_id().map(str::to_owned),
        user_message_id: stream.user_message_id().map(str::to_owned),
    };
    let stop = runs.insert(&handle);
    let runs = runs.inner().clone();
    let closed = Arc::new(AtomicBool::new(false));
    let page = {
        let closed = closed.clone();
        // The scheduler gives the columns' workers every physical core between them.
        let threads = u32::try_from(conclave_core::metrics::physical_cores()).unwrap_or(u32::MAX);
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        frames::per_frame(
            frames::ui_frame_for(threads, cpus),
            move |out: CompareOutput| {
                if let Err(e) = on_event.send(out) {
                    tracing::debug!("compare channel closed: {e}");
                    closed.store(true, Ordering::SeqCst);
                }
            },
        )
    };
    tauri::async_runtime::spawn(async move {
        let mut stopping = false;
        loop {
            tokio::select! {
                out = stream.next_event() => {
                    let Some(out) = out else { break };
                    page.send(out);
                    if closed.load(Ordering::SeqCst) && !stopping {
                        // The window went away: nobody is watching, so stop spending CPU.
                        stream.cancel();
                        stopping = true;
                    }
                }
                // After a cancel, keep draining: the columns still report `cancelled`
                // and the summary, which the UI waits for.
                () = stop.notified(), if !stopping => {
                    stream.cancel();
                    stopping = true;
                }
            }
        }
        runs.remove(&handle);
    });
    Ok(started)
}

#[tauri::command]
pub async fn cancel_compare(runs: State<'_, Arc<CompareRuns>>, run_id: String) -> ApiResult<()> {
    // Already finished is not an error: the user's intent (nothing running) holds.
    if let Some(stop) = runs.get(&run_id) {
        stop.notify_one();
    }
    Ok(())
}

/// Records the vote and returns who each column was.
#[tauri::command]
pub async fn vote_compare(
    shell: State<'_, Shell>,
    run_id: String,
    vote: String,
) -> ApiResult<Vec<RevealedColumn>> {
    let vote = Vote::parse(&vote).ok_or_else(|| {
        ApiError::invalid_input(format!(
            "unknown vote '{vote}' (a_better, b_better, tie, both_bad)"
        ))
    })?;
    Ok(compare::vote(&shell.core()?.history, &run_id, vote).await?)
}

#[tauri::command]
pub async fn compare_diff(
    answer_a: String,
    thinking_a: String,
    answer_b: String,
    thinking_b: String,
) -> ApiResult<ColumnDiff> {
    // Bounded by the core's diff timeout, but still CPU work: off the async threads.
    tauri::async_runtime::spawn_blocking(move || {
        compare::diff_columns(&answer_a, &thinking_a, &answer_b, &thinking_b)
    })
    .await
    .map_err(crate::error::join_error)
}

fn tag_filter(tag: Option<String>) -> Option<String> {
    tag.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

#[tauri::command]
pub async fn leaderboard(shell: State<'_, Shell>, tag: Option<String>) -> ApiResult<Leaderboard> {
    let tag = tag_filter(tag);
    Ok(leaderboard::leaderboard(&shell.core()?.history, tag.as_deref()).await?)
}

#[tauri::command]
pub async fn leaderboard_csv(shell: State<'_, Shell>, tag: Option<String>) -> ApiResult<String> {
    let tag = tag_filter(tag);
    let board = leaderboard::leaderboard(&shell.core()?.history, tag.as_deref()).await?;
    Ok(board.to_csv())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_request_accepts_what_the_ui_sends() {
        let json = serde_json::json!({
            "prompt": "hi",
            "columns": [
                {"model_id": "a", "settings": {"think": "off", "sampling": {"temperature": 0.2}}, "label": null},
                {"model_id": "b"}
            ],
            "options": {"blind": true, "tag": "t", "no_save": false}
        });
        let req: CompareRequestDto = match serde_json::from_value(json) {
            Ok(r) => r,
            Err(e) => panic!("the UI's request must parse: {e}"),
        };
        assert_eq!(req.columns.len(), 2);
        assert!(req.options.blind);
        assert_eq!(req.columns[0].settings.sampling.temperature, 0.2);
    }

    #[test]
    fn blank_tags_mean_no_filter() {
        assert_eq!(tag_filter(Some("  ".into())), None);
        assert_eq!(tag_filter(Some(" x ".into())), Some("x".into()));
    }
}
