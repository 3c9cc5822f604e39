//! Pure tests of the Gemini batch time model (`gemini_batch.rs`) at exact offsets.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{Batch, Item, Phase, Plan, State};

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn batch(plan: Plan, turnaround: u64, expiry: u64) -> Batch {
    Batch {
        seq: 1,
        name: "batches/t".to_owned(),
        model: "gemini-2.5-flash".to_owned(),
        display_name: "t".to_owned(),
        priority: 0,
        input_file: None,
        items: vec![Item {
            key: Some("a".to_owned()),
            metadata: None,
            request: Ok(json!({"contents": [{"parts": [{"text": "x"}]}]})),
        }],
        tokens: 1,
        start: Instant::now(),
        created_ms: 1_767_225_600_000,
        turnaround: s(turnaround),
        expiry: s(expiry),
        input_expires: None,
        plan,
        line_errors: HashSet::new(),
        cancel_at: None,
        deleted: false,
        job_state_names: false,
        outcome: None,
    }
}

fn at(phase: Phase, since: u64) -> State {
    State {
        phase,
        since: s(since),
    }
}

#[test]
fn run_plan_is_pending_running_then_succeeded() {
    let b = batch(Plan::Run, 100, 1_000);
    assert_eq!(b.state(s(0)), at(Phase::Pending, 0));
    assert_eq!(b.state(s(9)), at(Phase::Pending, 0));
    assert_eq!(b.state(s(10)), at(Phase::Running, 10));
    assert_eq!(b.state(s(99)), at(Phase::Running, 10));
    assert_eq!(b.state(s(100)), at(Phase::Succeeded, 100));
    assert_eq!(b.state(s(5_000)), at(Phase::Succeeded, 100));
    let instant = batch(Plan::Run, 0, 1_000);
    assert_eq!(instant.state(s(0)), at(Phase::Succeeded, 0));
}

#[test]
fn failures_and_expiries() {
    let failed = batch(Plan::Fail(json!({"code": 13})), 100, 1_000);
    assert_eq!(failed.state(s(9)), at(Phase::Pending, 0));
    assert_eq!(failed.state(s(10)), at(Phase::Failed, 10));
    let expiring = batch(Plan::Expire, 100, 1_000);
    assert_eq!(expiring.state(s(500)), at(Phase::Running, 10));
    assert_eq!(expiring.state(s(1_000)), at(Phase::Expired, 1_000));
    // Not done before the expiry: expired, never succeeded.
    let late = batch(Plan::Run, 2_000, 1_000);
    assert_eq!(late.state(s(999)), at(Phase::Running, 200));
    assert_eq!(late.state(s(1_000)), at(Phase::Expired, 1_000));
    // Expiry before it even runs.
    let early = batch(Plan::Run, 2_000, 100);
    assert_eq!(early.state(s(99)), at(Phase::Pending, 0));
    assert_eq!(early.state(s(100)), at(Phase::Expired, 100));
    // Its input file expired before it started running.
    let mut starved = batch(Plan::Run, 100, 1_000);
    starved.input_expires = Some(s(5));
    assert_eq!(starved.state(s(10)), at(Phase::Failed, 10));
    starved.input_expires = Some(s(50));
    assert_eq!(starved.state(s(100)), at(Phase::Succeeded, 100));
}

#[test]
fn cancellation_wins_only_before_the_end() {
    let mut b = batch(Plan::Run, 100, 1_000);
    b.cancel_at = Some(s(30));
    assert_eq!(b.state(s(29)), at(Phase::Running, 10));
    assert_eq!(b.state(s(30)), at(Phase::Cancelled, 30));
    let mut pending = batch(Plan::Expire, 100, 1_000);
    pending.cancel_at = Some(s(5));
    assert_eq!(pending.state(s(4)), at(Phase::Pending, 0));
    assert_eq!(pending.state(s(6)), at(Phase::Cancelled, 5));
    // A cancellation taking effect after the batch succeeded changes nothing.
    let mut late = batch(Plan::Run, 100, 1_000);
    late.cancel_at = Some(s(150));
    assert_eq!(late.state(s(200)), at(Phase::Succeeded, 100));
}

#[test]
fn operation_envelope_of_each_state() {
    let b = batch(Plan::Run, 100, 1_000);
    let pending = b.operation(at(Phase::Pending, 0));
    assert!(pending.get("done").is_none());
    assert_eq!(
        pending["metadata"]["createTime"],
        "2026-01-01T00:00:00.000000Z"
    );
    assert_eq!(
        pending["metadata"]["batchStats"]["pendingRequestCount"],
        "1"
    );
    let running = b.operation(at(Phase::Running, 10));
    assert_eq!(
        running["metadata"]["updateTime"],
        "2026-01-01T00:00:10.000000Z"
    );
    assert!(running["metadata"].get("endTime").is_none());
    let cancelled = b.operation(at(Phase::Cancelled, 30));
    assert_eq!(cancelled["done"], true);
    assert_eq!(cancelled["error"]["code"], 1);
    assert_eq!(
        cancelled["metadata"]["endTime"],
        "2026-01-01T00:00:30.000000Z"
    );
    assert_eq!(
        cancelled["metadata"]["batchStats"],
        json!({"requestCount": "1"})
    );
    let expired = b.operation(at(Phase::Expired, 1_000));
    assert_eq!(expired["error"]["code"], 4);
    assert!(expired.get("response").is_none());
    assert_eq!(expired["metadata"]["state"], "BATCH_STATE_EXPIRED");
    let sdk = Batch {
        job_state_names: true,
        ..batch(Plan::Run, 100, 1_000)
    };
    let running = sdk.operation(at(Phase::Running, 10));
    assert_eq!(running["metadata"]["state"], "JOB_STATE_RUNNING");
}
