//! A scripted, in-memory Batch API for engine tests: it counts every call, keeps the
//! batches it created, and ends them the way a test says (completed, expired, failed with
//! or without line errors, cancelled), after a number of polls.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};

use super::{
    BatchApiError, BatchInput, BatchState, FileChunks, FlushRef, InputKind, ResultBody,
    UpstreamBatch,
};

/// How a created batch ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Every line answered 200 with a small chat completion.
    Completed,
    /// Nothing ran: every line `batch_expired`.
    Expired,
    /// Refused as a whole, naming these 1-based lines invalid.
    Failed(Vec<u64>),
    /// Cancelled before anything ran.
    Cancelled,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Calls {
    pub upload: u32,
    pub create: u32,
    pub get: u32,
    pub find: u32,
    pub results: u32,
    pub cancel: u32,
}

struct Created {
    /// Creation order.
    seq: u32,
    flush_id: String,
    custom_ids: Vec<String>,
    polls_left: u32,
    ending: Ending,
}

#[derive(Default)]
struct State {
    calls: Calls,
    files: HashMap<String, Vec<u8>>,
    batches: HashMap<String, Created>,
    results: HashMap<String, Vec<u8>>,
    /// Statuses the next creates answer with (429, 400, ...), in order.
    create_refusals: VecDeque<StatusCode>,
    /// Creates that succeed upstream but whose answer is lost on the way back.
    lost_answers: u32,
    /// Polls the first batch created takes, if not the usual.
    first_polls: Option<u32>,
    next: u32,
}

pub struct Fake {
    kind: InputKind,
    /// Finds batches as Message Batches must: by request count, newest first.
    by_size: bool,
    polls: u32,
    ending: Mutex<Ending>,
    state: Mutex<State>,
    /// Creates wait here, before the fake receives them, while stalled.
    stall: tokio::sync::watch::Sender<bool>,
    /// Creates waiting at the stall now.
    stalled_creates: tokio::sync::watch::Sender<u32>,
}

impl Fake {
    /// Batches that end after `polls` polls, as `ending` says.
    pub fn new(kind: InputKind, polls: u32, ending: Ending) -> Fake {
        Fake {
            kind,
            by_size: false,
            polls,
            ending: Mutex::new(ending),
            state: Mutex::default(),
            stall: tokio::sync::watch::Sender::new(false),
            stalled_creates: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The same, finding batches by request count only (no metadata), newest first.
    pub fn without_metadata(kind: InputKind, polls: u32, ending: Ending) -> Fake {
        Fake {
            by_size: true,
            ..Fake::new(kind, polls, ending)
        }
    }

    pub fn finds_by_size(&self) -> bool {
        self.by_size
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn calls(&self) -> Calls {
        self.state().calls.clone()
    }

    /// How batches created from now on end.
    pub fn set_ending(&self, ending: Ending) {
        *self.ending.lock().unwrap_or_else(|p| p.into_inner()) = ending;
    }

    /// The next creates are refused with these statuses, in order.
    pub fn refuse_creates(&self, statuses: &[StatusCode]) {
        self.state().create_refusals.extend(statuses);
    }

    /// The first batch created takes `polls` polls to end.
    pub fn slow_first(&self, polls: u32) {
        self.state().first_polls = Some(polls);
    }

    /// The next `n` creates succeed upstream, but their answers are lost.
    pub fn lose_create_answers(&self, n: u32) {
        self.state().lost_answers += n;
    }

    /// Creates from now on wait, on their way to the fake (a slow network, a stalled
    /// sender), until [`Fake::release_creates`]; those dropped meanwhile never arrive.
    pub fn stall_creates(&self) {
        self.stall.send_replace(true);
    }

    pub fn release_creates(&self) {
        self.stall.send_replace(false);
    }

    /// Returns once `n` creates wait at the stall.
    pub async fn creates_stalled(&self, n: u32) {
        let mut waiting = self.stalled_creates.subscribe();
        let _ = waiting.wait_for(|w| *w >= n).await;
    }

    /// Every custom id sent upstream, once per line of every batch created.
    pub fn lines_sent(&self) -> Vec<String> {
        let s = self.state();
        s.batches
            .values()
            .flat_map(|b| b.custom_ids.iter().cloned())
            .collect()
    }

    pub fn input_kind(&self) -> InputKind {
        self.kind
    }

    pub async fn upload(
        &self,
        _f: FlushRef<'_>,
        chunks: FileChunks,
    ) -> Result<String, BatchApiError> {
        let bytes = drain(chunks).await?;
        let mut s = self.state();
        s.calls.upload += 1;
        s.next += 1;
        let id = format!("file-{}", s.next);
        s.files.insert(id.clone(), bytes);
        Ok(id)
    }

    pub async fn create(
        &self,
        f: FlushRef<'_>,
        input: BatchInput,
    ) -> Result<UpstreamBatch, BatchApiError> {
        let mut stall = self.stall.subscribe();
        if *stall.borrow_and_update() {
            self.stalled_creates.send_modify(|n| *n += 1);
            // Counted out again even when the caller drops this call at the stall.
            let _out = Stalled(&self.stalled_creates);
            let _ = stall.wait_for(|s| !*s).await;
        }
        let bytes = match input {
            BatchInput::File(id) => self.state().files.get(&id).cloned().unwrap_or_default(),
            BatchInput::Inline(chunks) => drain(chunks).await?,
        };
        let ending = self
            .ending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut s = self.state();
        s.calls.create += 1;
        if let Some(status) = s.create_refusals.pop_front() {
            return Err(BatchApiError::Status {
                provider: "fake",
                status,
                body: "refused".into(),
                retry_after: None,
            });
        }
        let custom_ids = bytes
            .split(|&b| b == b'\n')
            .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
            .filter_map(|v| v["custom_id"].as_str().map(str::to_owned))
            .collect();
        s.next += 1;
        let (seq, id) = (s.next, format!("batch-{}", s.next));
        let first_polls = s.first_polls.filter(|_| s.batches.is_empty());
        s.batches.insert(
            id.clone(),
            Created {
                seq,
                flush_id: f.id.to_owned(),
                custom_ids,
                polls_left: first_polls.unwrap_or(self.polls),
                ending,
            },
        );
        if s.lost_answers > 0 {
            s.lost_answers -= 1;
            return Err(BatchApiError::Transport {
                provider: "fake",
                reason: "connection reset".into(),
            });
        }
        Ok(running(&id))
    }

    pub async fn get(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        let mut s = self.state();
        s.calls.get += 1;
        let Some(b) = s.batches.get_mut(batch_id) else {
            return Err(BatchApiError::Status {
                provider: "fake",
                status: StatusCode::NOT_FOUND,
                body: "no such batch".into(),
                retry_after: None,
            });
        };
        if b.polls_left > 0 {
            b.polls_left -= 1;
            return Ok(running(batch_id));
        }
        let (status, state, lines) = match &b.ending {
            Ending::Completed => (
                "completed",
                ended(batch_id),
                b.custom_ids.iter().map(|id| answered(id)).collect(),
            ),
            Ending::Expired => (
                "expired",
                ended(batch_id),
                b.custom_ids
                    .iter()
                    .map(|id| not_run(id, "batch_expired"))
                    .collect(),
            ),
            Ending::Cancelled => (
                "cancelled",
                ended(batch_id),
                b.custom_ids
                    .iter()
                    .map(|id| not_run(id, "batch_cancelled"))
                    .collect(),
            ),
            Ending::Failed(lines) => (
                "failed",
                BatchState::Refused {
                    lines: lines
                        .iter()
                        .map(|&l| (l, format!("line {l} is invalid")))
                        .collect(),
                },
                Vec::new(),
            ),
        };
        let file: Vec<u8> = lines.join("\n").into_bytes();
        s.results.insert(format!("out-{batch_id}"), file);
        Ok(UpstreamBatch {
            id: batch_id.to_owned(),
            status: status.to_owned(),
            state,
        })
    }

    pub async fn find(&self, f: FlushRef<'_>) -> Result<Vec<UpstreamBatch>, BatchApiError> {
        let mut s = self.state();
        s.calls.find += 1;
        let mut found: Vec<(u32, &String)> = s
            .batches
            .iter()
            .filter(|(_, b)| {
                if self.by_size {
                    b.custom_ids.len() == f.job_count as usize
                } else {
                    b.flush_id == f.id
                }
            })
            .map(|(id, b)| (b.seq, id))
            .collect();
        found.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        Ok(found.into_iter().map(|(_, id)| running(id)).collect())
    }

    pub async fn results(&self, location: &str) -> Result<ResultBody, BatchApiError> {
        let mut s = self.state();
        s.calls.results += 1;
        let bytes = s.results.get(location).cloned().unwrap_or_default();
        Ok(Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed_unsync())
    }

    pub async fn cancel(&self, batch_id: &str) -> Result<UpstreamBatch, BatchApiError> {
        self.state().calls.cancel += 1;
        Ok(running(batch_id))
    }
}

fn running(id: &str) -> UpstreamBatch {
    UpstreamBatch {
        id: id.to_owned(),
        status: "in_progress".into(),
        state: BatchState::Running,
    }
}

fn ended(id: &str) -> BatchState {
    BatchState::Ended {
        results: vec![format!("out-{id}")],
    }
}

fn answered(custom_id: &str) -> String {
    serde_json::json!({
        "custom_id": custom_id,
        "response": {"status_code": 200, "body": {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        }},
        "error": null
    })
    .to_string()
}

fn not_run(custom_id: &str, code: &str) -> String {
    serde_json::json!({"custom_id": custom_id, "response": null, "error": {"code": code, "message": code}})
        .to_string()
}

async fn drain(mut chunks: FileChunks) -> Result<Vec<u8>, BatchApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk.map_err(|e| BatchApiError::Transport {
            provider: "fake",
            reason: e.to_string(),
        })?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// One create waiting at the stall.
struct Stalled<'a>(&'a tokio::sync::watch::Sender<u32>);

impl Drop for Stalled<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}
