//! Pure tests of the batch time model (`batch.rs`): states, timestamps and the share of
//! lines finished at a cancellation, at exact offsets instead of wall-clock time.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::super::batch_run::Line;
use super::super::{SimConfig, Simulator};
use super::{Batch, Cancel, Plan};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn batch(plan: Plan, turnaround: Duration, lines: usize) -> Batch {
    Batch {
        id: "batch_t".to_owned(),
        endpoint: "/v1/chat/completions".to_owned(),
        input_file_id: "file-t".to_owned(),
        metadata: None,
        output_ttl: 3_600,
        model: Some("gpt-4o-mini".to_owned()),
        start: Instant::now(),
        created_ms: 1_000_000,
        turnaround,
        plan,
        lines: (0..lines)
            .map(|i| Line {
                custom_id: format!("l{i}"),
                body: json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}),
            })
            .collect(),
        line_errors: HashSet::new(),
        cancel: None,
        outcome: None,
    }
}

#[test]
fn run_plan_walks_every_state_with_entry_timestamps() {
    let b = batch(Plan::Run, ms(1_000), 1);
    let at = |e| b.state(ms(e));
    assert_eq!(at(0).status, "validating");
    assert_eq!(at(99).status, "validating");
    assert_eq!(at(100).status, "in_progress");
    assert_eq!(at(100).in_progress_at, Some(ms(100)));
    assert_eq!(at(899).status, "in_progress");
    assert_eq!(at(899).finalizing_at, None);
    assert_eq!(at(900).status, "finalizing");
    assert_eq!(at(900).finalizing_at, Some(ms(900)));
    let done = at(5_000);
    assert_eq!(done.status, "completed");
    assert!(done.terminal);
    assert_eq!(done.completed_at, Some(ms(1_000)));
    assert_eq!(b.unix(ms(999)), 1_000);
    assert_eq!(b.unix(ms(1_000)), 1_001);
}

#[test]
fn zero_turnaround_is_complete_at_once() {
    let b = batch(Plan::Run, Duration::ZERO, 1);
    assert_eq!(b.state(Duration::ZERO).status, "completed");
    assert_eq!(b.state(Duration::ZERO).in_progress_at, Some(Duration::ZERO));
}

#[test]
fn failed_and_expired_plans() {
    let f = batch(Plan::Fail(Vec::new()), ms(1_000), 0);
    assert_eq!(f.state(ms(50)).status, "validating");
    let failed = f.state(ms(100));
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.failed_at, Some(ms(100)));
    assert_eq!(failed.in_progress_at, None);

    let e = batch(Plan::Expire(0.5), ms(1_000), 4);
    assert_eq!(e.state(ms(950)).status, "in_progress");
    let expired = e.state(ms(1_000));
    assert_eq!(expired.status, "expired");
    assert_eq!(expired.expired_at, Some(ms(1_000)));
    assert_eq!(expired.finalizing_at, None);
    assert!((e.progress(ms(550)) - 0.25).abs() < 1e-9);
}

#[test]
fn cancel_keeps_earlier_states_and_finishes_a_share_of_lines() {
    let sim = Simulator::new(SimConfig::default());
    let mut b = batch(Plan::Run, ms(1_000), 4);
    b.cancel = Some(Cancel {
        at: ms(500),
        delay: ms(200),
    });
    let cancelling = b.state(ms(600));
    assert_eq!(cancelling.status, "cancelling");
    assert_eq!(cancelling.in_progress_at, Some(ms(100)));
    assert_eq!(cancelling.cancelling_at, Some(ms(500)));
    assert!(!cancelling.terminal);
    let cancelled = b.state(ms(5_000));
    assert_eq!(cancelled.status, "cancelled");
    assert_eq!(cancelled.cancelled_at, Some(ms(700)));
    assert_eq!(cancelled.finalizing_at, None);
    assert!((b.progress(ms(500)) - 0.5).abs() < 1e-9);

    b.finalize(&sim, &cancelling);
    assert!(b.outcome.is_none(), "not terminal yet");
    b.finalize(&sim, &cancelled);
    let outcome = b.outcome.as_ref().unwrap();
    assert_eq!((outcome.counts.completed, outcome.counts.failed), (2, 2));
    let output = sim
        .files
        .get(outcome.output_file_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(output.0.purpose, "batch_output");
    let text = String::from_utf8(output.1.to_vec()).unwrap();
    assert!(text.contains("\"l0\"") && text.contains("\"l1\""));
    let errors = sim
        .files
        .get(outcome.error_file_id.as_deref().unwrap())
        .unwrap();
    let text = String::from_utf8(errors.1.to_vec()).unwrap();
    assert_eq!(text.matches("batch_cancelled").count(), 2);
    // Exactly once: a second finalize changes nothing.
    let first = outcome.output_file_id.clone();
    b.finalize(&sim, &cancelled);
    assert_eq!(b.outcome.as_ref().unwrap().output_file_id, first);
}
