//! The storage contract: every storage method, run against SQLite and PostgreSQL alike.

use crate::support::TestDb;
use hearback::storage::{Actor, JobState, NewApiKey, NewJob, NewUnit, StorageError};
use hearback::time::Timestamp;
use hearback::units::UnitCode;
use serde_json::json;
use std::time::Duration;

crate::both_backends!(
    a_migrated_schema_is_current_and_migrating_again_changes_nothing,
    units_form_a_tree_and_every_creation_is_audited,
    a_duplicate_unit_code_is_a_typed_conflict,
    an_unknown_parent_is_a_typed_error,
    a_failing_batch_rolls_back_every_unit_before_the_failure,
    api_keys_are_created_listed_checked_and_revoked,
    two_active_keys_cannot_share_a_name,
    revoking_an_unknown_key_is_not_found,
    a_unique_job_key_enqueues_once,
    jobs_are_claimed_when_due_by_kind_and_up_to_the_limit,
    a_claimed_job_is_fenced_to_its_lease_owner,
    an_expired_lease_is_claimed_again_by_another_worker,
    retried_jobs_come_back_at_their_new_time_and_dead_jobs_keep_their_error,
    job_counts_cover_every_state,
    only_succeeded_jobs_past_retention_are_purged,
    timestamps_read_back_exactly_as_written,
);

fn code(raw: &str) -> UnitCode {
    UnitCode::parse(raw).unwrap()
}

fn unit(code_: &str, parent: Option<&str>) -> NewUnit {
    NewUnit {
        code: code(code_),
        name: format!("Unit {code_}"),
        parent: parent.map(code),
    }
}

fn job(kind: &str, run_at: Timestamp) -> NewJob {
    NewJob {
        kind: kind.into(),
        payload: json!({"n": 1}),
        run_at,
        max_attempts: 3,
        unique_key: None,
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(1_795_000_000_000 + seconds * 1000).unwrap()
}

const LEASE: Duration = Duration::from_secs(30);

async fn a_migrated_schema_is_current_and_migrating_again_changes_nothing(db: &TestDb) {
    let status = db.storage.schema_status().await.unwrap();
    assert!(status.is_current(), "{status:?}");
    assert_eq!(status.current, Some(status.required));
    assert_eq!(db.storage.migrate().await.unwrap(), 0);
    db.storage.ensure_schema_current().await.unwrap();
    db.storage.ping().await.unwrap();
}

async fn units_form_a_tree_and_every_creation_is_audited(db: &TestDb) {
    let s = &db.storage;
    let now = at(0);
    s.create_unit(&unit("ACME", None), &Actor::Cli, now)
        .await
        .unwrap();
    s.create_unit(&unit("RHONE", Some("ACME")), &Actor::Cli, now)
        .await
        .unwrap();
    let lyon = s
        .create_unit(
            &unit("LYON-2", Some("RHONE")),
            &Actor::ApiKey("k1".into()),
            now,
        )
        .await
        .unwrap();
    s.create_unit(&unit("LYON-1", Some("RHONE")), &Actor::Cli, now)
        .await
        .unwrap();
    assert_eq!(lyon.parent, Some(code("RHONE")));

    let stored = s.unit(&code("LYON-2")).await.unwrap().unwrap();
    assert_eq!(stored, lyon);
    assert_eq!(s.unit(&code("NOWHERE")).await.unwrap(), None);

    let all: Vec<String> = s
        .units()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.code.to_string())
        .collect();
    assert_eq!(all, ["ACME", "LYON-1", "LYON-2", "RHONE"]);
    assert_eq!(
        s.unit_ancestors(&code("LYON-2")).await.unwrap(),
        [code("ACME"), code("RHONE")]
    );
    assert_eq!(
        s.unit_ancestors(&code("ACME")).await.unwrap(),
        Vec::<UnitCode>::new()
    );
    assert_eq!(
        s.unit_children(&code("RHONE")).await.unwrap(),
        [code("LYON-1"), code("LYON-2")]
    );

    let audit = s.audit_entries("unit", 10).await.unwrap();
    assert_eq!(audit.len(), 4);
    assert_eq!(
        audit[0].target_id.as_deref(),
        Some("LYON-1"),
        "newest first"
    );
    assert_eq!(audit[1].actor, "api_key:k1");
    assert_eq!(audit[1].action, "unit.created");
    assert_eq!(
        audit[1].details,
        json!({"name": "Unit LYON-2", "parent": "RHONE"})
    );
    assert_eq!(audit[1].at, now);
}

async fn a_duplicate_unit_code_is_a_typed_conflict(db: &TestDb) {
    let s = &db.storage;
    s.create_unit(&unit("ACME", None), &Actor::Cli, at(0))
        .await
        .unwrap();
    let error = s
        .create_unit(&unit("ACME", None), &Actor::Cli, at(1))
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::AlreadyExists(_)), "{error:?}");
    assert_eq!(s.units().await.unwrap().len(), 1);
    assert_eq!(
        s.audit_entries("unit", 10).await.unwrap().len(),
        1,
        "the refused creation left no audit entry"
    );
}

async fn an_unknown_parent_is_a_typed_error(db: &TestDb) {
    let error = db
        .storage
        .create_unit(&unit("LYON-2", Some("GHOST")), &Actor::Cli, at(0))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StorageError::UnknownReference("the parent unit")),
        "{error:?}"
    );
    assert!(db.storage.units().await.unwrap().is_empty());
}

async fn a_failing_batch_rolls_back_every_unit_before_the_failure(db: &TestDb) {
    let s = &db.storage;
    s.create_unit(&unit("TAKEN", None), &Actor::Cli, at(0))
        .await
        .unwrap();
    let batch = [
        unit("ACME", None),
        unit("RHONE", Some("ACME")),
        unit("TAKEN", Some("RHONE")),
    ];
    let error = s
        .create_units(&batch, &Actor::Cli, at(1))
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::AlreadyExists(_)), "{error:?}");
    let codes: Vec<String> = s
        .units()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.code.to_string())
        .collect();
    assert_eq!(
        codes,
        ["TAKEN"],
        "ACME and RHONE were written before the failure and rolled back"
    );
    assert_eq!(s.audit_entries("unit", 10).await.unwrap().len(), 1);

    let created = s
        .create_units(&batch[..2], &Actor::Cli, at(2))
        .await
        .unwrap();
    assert_eq!(
        created.len(),
        2,
        "a batch may create a parent and its child"
    );
}

fn new_key(id: &str, name: &str) -> NewApiKey {
    NewApiKey {
        id: id.into(),
        name: name.into(),
        secret_hash: [7; 32],
        user_id: None,
    }
}

async fn api_keys_are_created_listed_checked_and_revoked(db: &TestDb) {
    let s = &db.storage;
    let created = s
        .create_api_key(&new_key("aaaa", "crm"), &Actor::Cli, at(0))
        .await
        .unwrap();
    s.create_api_key(&new_key("bbbb", "bi"), &Actor::Cli, at(1))
        .await
        .unwrap();
    assert_eq!(created.revoked_at, None);

    let listed = s.api_keys().await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["crm", "bi"]
    );
    assert_eq!(listed[0], created);

    let credential = s.api_key_credential("aaaa").await.unwrap().unwrap();
    assert_eq!(credential.secret_hash, vec![7; 32]);
    assert!(
        !format!("{credential:?}").contains("secret_hash"),
        "the hash stays out of logs"
    );
    assert_eq!(s.api_key_credential("zzzz").await.unwrap(), None);

    let revoked = s.revoke_api_key("aaaa", &Actor::Cli, at(5)).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(at(5)));
    let again = s.revoke_api_key("aaaa", &Actor::Cli, at(9)).await.unwrap();
    assert_eq!(
        again.revoked_at,
        Some(at(5)),
        "revoking twice keeps the first revocation"
    );
    assert_eq!(
        s.api_key_credential("aaaa")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at(5))
    );

    let audit = s.audit_entries("api_key", 10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["api_key.revoked", "api_key.created", "api_key.created"]
    );
}

async fn two_active_keys_cannot_share_a_name(db: &TestDb) {
    let s = &db.storage;
    s.create_api_key(&new_key("aaaa", "crm"), &Actor::Cli, at(0))
        .await
        .unwrap();
    let error = s
        .create_api_key(&new_key("bbbb", "crm"), &Actor::Cli, at(1))
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::AlreadyExists(_)), "{error:?}");
    let error = s
        .create_api_key(&new_key("aaaa", "other"), &Actor::Cli, at(1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StorageError::AlreadyExists(_)),
        "the id is unique too: {error:?}"
    );
    s.revoke_api_key("aaaa", &Actor::Cli, at(2)).await.unwrap();
    s.create_api_key(&new_key("cccc", "crm"), &Actor::Cli, at(3))
        .await
        .expect("the name is free once revoked");
}

async fn revoking_an_unknown_key_is_not_found(db: &TestDb) {
    let error = db
        .storage
        .revoke_api_key("nope", &Actor::Cli, at(0))
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::NotFound(_)), "{error:?}");
    assert!(
        db.storage
            .audit_entries("api_key", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_unique_job_key_enqueues_once(db: &TestDb) {
    let s = &db.storage;
    let keyed = NewJob {
        unique_key: Some("send:42".into()),
        ..job("send", at(0))
    };
    let first = s.enqueue_job(&keyed, at(0)).await.unwrap();
    let second = s.enqueue_job(&keyed, at(1)).await.unwrap();
    assert_eq!(first, second);
    let other = s.enqueue_job(&job("send", at(0)), at(0)).await.unwrap();
    assert_ne!(other, first, "jobs without a key are never merged");
    let stored = s.job(first).await.unwrap().unwrap();
    assert_eq!(stored.state, JobState::Pending);
    assert_eq!(stored.unique_key.as_deref(), Some("send:42"));
    assert_eq!(stored.payload, json!({"n": 1}));
    assert_eq!(stored.attempts, 0);
    assert_eq!(s.job(i64::MAX).await.unwrap(), None);
}

async fn jobs_are_claimed_when_due_by_kind_and_up_to_the_limit(db: &TestDb) {
    const LONG_LEASE: Duration = Duration::from_secs(1000);
    let s = &db.storage;
    let later = s.enqueue_job(&job("send", at(100)), at(0)).await.unwrap();
    let second = s.enqueue_job(&job("send", at(5)), at(0)).await.unwrap();
    let first = s.enqueue_job(&job("send", at(1)), at(0)).await.unwrap();
    let other_kind = s.enqueue_job(&job("digest", at(0)), at(0)).await.unwrap();

    assert!(
        s.claim_jobs("w1", &[], 10, LONG_LEASE, at(10))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.claim_jobs("w1", &["send"], 0, LONG_LEASE, at(10))
            .await
            .unwrap()
            .is_empty()
    );

    let claimed = s
        .claim_jobs("w1", &["send"], 1, LONG_LEASE, at(10))
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [first],
        "the earliest due job first"
    );
    assert_eq!(claimed[0].attempt, 1);
    assert_eq!(claimed[0].max_attempts, 3);
    assert_eq!(claimed[0].payload, json!({"n": 1}));

    let claimed = s
        .claim_jobs("w1", &["send"], 10, LONG_LEASE, at(10))
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [second],
        "not yet due jobs wait"
    );

    let record = s.job(first).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Running);
    assert_eq!(record.lease_owner.as_deref(), Some("w1"));
    assert_eq!(record.lease_expires_at, Some(at(10) + LONG_LEASE));

    let claimed = s
        .claim_jobs("w1", &["send", "digest"], 10, LONG_LEASE, at(100))
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [other_kind, later]
    );
}

async fn a_claimed_job_is_fenced_to_its_lease_owner(db: &TestDb) {
    let s = &db.storage;
    let id = s.enqueue_job(&job("send", at(0)), at(0)).await.unwrap();
    s.claim_jobs("w1", &["send"], 1, LEASE, at(1))
        .await
        .unwrap();
    assert!(
        s.claim_jobs("w2", &["send"], 1, LEASE, at(2))
            .await
            .unwrap()
            .is_empty(),
        "a leased job is not claimed twice"
    );
    assert!(!s.complete_job(id, "w2", at(3)).await.unwrap());
    assert!(!s.retry_job(id, "w2", "x", at(9), at(3)).await.unwrap());
    assert!(!s.bury_job(id, "w2", "x", at(3)).await.unwrap());
    assert!(!s.renew_job_lease(id, "w2", at(90), at(3)).await.unwrap());

    assert!(s.renew_job_lease(id, "w1", at(60), at(4)).await.unwrap());
    assert_eq!(
        s.job(id).await.unwrap().unwrap().lease_expires_at,
        Some(at(60))
    );
    assert!(s.complete_job(id, "w1", at(5)).await.unwrap());
    let record = s.job(id).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Succeeded);
    assert_eq!(record.finished_at, Some(at(5)));
    assert_eq!(record.lease_owner, None);
    assert!(
        !s.complete_job(id, "w1", at(6)).await.unwrap(),
        "a settled job cannot be settled again"
    );
}

async fn an_expired_lease_is_claimed_again_by_another_worker(db: &TestDb) {
    let s = &db.storage;
    let id = s.enqueue_job(&job("send", at(0)), at(0)).await.unwrap();
    s.claim_jobs("dead-worker", &["send"], 1, LEASE, at(1))
        .await
        .unwrap();
    let before_expiry = at(1) + LEASE - Duration::from_millis(1);
    assert!(
        s.claim_jobs("w2", &["send"], 1, LEASE, before_expiry)
            .await
            .unwrap()
            .is_empty()
    );

    let reclaimed = s
        .claim_jobs("w2", &["send"], 1, LEASE, at(1) + LEASE)
        .await
        .unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].id, id);
    assert_eq!(reclaimed[0].attempt, 2, "the lost run counts as an attempt");
    assert!(
        !s.complete_job(id, "dead-worker", at(40)).await.unwrap(),
        "the old owner's outcome is dropped"
    );
    assert!(s.complete_job(id, "w2", at(40)).await.unwrap());
}

async fn retried_jobs_come_back_at_their_new_time_and_dead_jobs_keep_their_error(db: &TestDb) {
    let s = &db.storage;
    let id = s.enqueue_job(&job("send", at(0)), at(0)).await.unwrap();
    s.claim_jobs("w1", &["send"], 1, LEASE, at(0))
        .await
        .unwrap();
    assert!(
        s.retry_job(id, "w1", "provider answered 503", at(20), at(1))
            .await
            .unwrap()
    );
    let record = s.job(id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.run_at, record.attempts),
        (JobState::Pending, at(20), 1)
    );
    assert_eq!(record.last_error.as_deref(), Some("provider answered 503"));
    assert_eq!(record.finished_at, None);

    assert!(
        s.claim_jobs("w1", &["send"], 1, LEASE, at(19))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.claim_jobs("w1", &["send"], 1, LEASE, at(20))
            .await
            .unwrap()[0]
            .attempt,
        2
    );
    let long_error = "x".repeat(10_000);
    assert!(s.bury_job(id, "w1", &long_error, at(21)).await.unwrap());
    let record = s.job(id).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Dead);
    assert_eq!(record.finished_at, Some(at(21)));
    assert_eq!(
        record.last_error.unwrap().len(),
        2_000,
        "errors are kept, truncated"
    );
    assert!(
        s.claim_jobs("w1", &["send"], 1, LEASE, at(10_000))
            .await
            .unwrap()
            .is_empty(),
        "dead jobs stay dead"
    );
}

async fn job_counts_cover_every_state(db: &TestDb) {
    let s = &db.storage;
    let counts = |c: Vec<hearback::storage::JobCount>| {
        c.into_iter()
            .map(|c| (c.state, c.count))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counts(s.job_counts().await.unwrap()),
        [
            (JobState::Pending, 0),
            (JobState::Running, 0),
            (JobState::Succeeded, 0),
            (JobState::Dead, 0)
        ]
    );
    for _ in 0..4 {
        s.enqueue_job(&job("send", at(0)), at(0)).await.unwrap();
    }
    let claimed = s
        .claim_jobs("w1", &["send"], 3, LEASE, at(1))
        .await
        .unwrap();
    s.complete_job(claimed[0].id, "w1", at(2)).await.unwrap();
    s.bury_job(claimed[1].id, "w1", "no", at(2)).await.unwrap();
    assert_eq!(
        counts(s.job_counts().await.unwrap()),
        [
            (JobState::Pending, 1),
            (JobState::Running, 1),
            (JobState::Succeeded, 1),
            (JobState::Dead, 1)
        ]
    );
}

async fn only_succeeded_jobs_past_retention_are_purged(db: &TestDb) {
    let s = &db.storage;
    for _ in 0..4 {
        s.enqueue_job(&job("send", at(0)), at(0)).await.unwrap();
    }
    let claimed = s
        .claim_jobs("w1", &["send"], 3, LEASE, at(0))
        .await
        .unwrap();
    s.complete_job(claimed[0].id, "w1", at(10)).await.unwrap();
    s.complete_job(claimed[1].id, "w1", at(100)).await.unwrap();
    s.bury_job(claimed[2].id, "w1", "no", at(10)).await.unwrap();
    assert_eq!(s.purge_succeeded_jobs(at(50)).await.unwrap(), 1);
    assert_eq!(s.job(claimed[0].id).await.unwrap(), None);
    assert!(s.job(claimed[1].id).await.unwrap().is_some(), "too recent");
    assert!(
        s.job(claimed[2].id).await.unwrap().is_some(),
        "dead jobs are kept for inspection"
    );
}

async fn timestamps_read_back_exactly_as_written(db: &TestDb) {
    let s = &db.storage;
    for millis in [0, 1, 999, 1_795_000_000_123, 4_102_444_800_000] {
        let when = Timestamp::from_millis(millis).unwrap();
        let id = s.enqueue_job(&job("t", when), when).await.unwrap();
        let record = s.job(id).await.unwrap().unwrap();
        assert_eq!((record.run_at, record.created_at), (when, when), "{millis}");
    }
}
