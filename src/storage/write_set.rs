//! Changes gathered in memory, then written with one statement per table.
//!
//! A busy instance applies many customer messages in one transaction. Written one row at a time,
//! each message costs about eight statements, and a statement costs far more than its rows (on
//! SQLite a hop to the connection's thread and back, on PostgreSQL a round trip and an executor
//! start): the statements, not the commits, bounded throughput (docs/PERFORMANCE.md). A
//! [`WriteSet`] collects what the messages of a transaction change — conversation states, answers,
//! outbox events, outgoing messages and their send jobs — and [`flush_writes!`] writes each table
//! with one statement ([`super::bulk`]), in an order that satisfies the foreign keys.
//!
//! Collecting is pure (no I/O), so the rules of what a change writes are in one place whatever
//! the transaction around it.

use super::{
    Advance, ConversationStatus, ConversationView, EXPIRE_JOB, Purpose, REMIND_JOB, SEND_JOB,
};
use crate::time::Timestamp;
use serde_json::{Value, json};

/// When an outgoing message is written and sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) now: Timestamp,
    /// When its send job is due.
    pub(crate) send_at: Timestamp,
    /// Whether it waits for the sending window when its turn comes: true for what hearback starts
    /// (an opening, a reminder), false for an answer to a customer who just wrote.
    pub(crate) waits_for_window: bool,
}

impl Timing {
    /// Written and due now, whatever the hour: an answer to the customer.
    pub(crate) fn reply(now: Timestamp) -> Timing {
        Timing {
            now,
            send_at: now,
            waits_for_window: false,
        }
    }
}

/// What one transaction writes besides what it reads and locks.
#[derive(Debug, Default)]
pub(crate) struct WriteSet {
    /// Conversations started, with their first state; written first (everything else may refer
    /// to them).
    pub(crate) new_conversations: Vec<NewConversationRow>,
    pub(crate) conversations: Vec<ConversationUpdate>,
    pub(crate) answers: Vec<AnswerRow>,
    pub(crate) events: Vec<EventRow>,
    pub(crate) outgoing: Vec<OutgoingRow>,
    pub(crate) jobs: Vec<JobRow>,
    /// Cases opened: written before the messages of the transaction, which may belong to them
    /// (see [`insert_new_cases!`]).
    pub(crate) new_cases: Vec<NewCaseRow>,
    pub(crate) case_events: Vec<CaseEventRow>,
    pub(crate) case_changes: Vec<CaseChange>,
    /// When set, the send jobs due now are written claimed under this lease, and
    /// [`flush_writes!`] returns them for this instance to run at once (see [`JobRow::due_now`]).
    pub(crate) lease: Option<super::JobLease>,
}

/// A case opened by an alert; the customer wrote when it opened (their text raised it).
#[derive(Debug)]
pub(crate) struct NewCaseRow {
    pub(crate) id: String,
    pub(crate) contact_id: String,
    pub(crate) unit_id: Option<String>,
    pub(crate) conversation_id: Option<String>,
    pub(crate) channel: String,
    pub(crate) sender: String,
    pub(crate) rule_id: String,
    pub(crate) priority: String,
    pub(crate) sla_due_at: Timestamp,
    pub(crate) opened_at: Timestamp,
}

/// One entry of a case's history.
#[derive(Debug)]
pub(crate) struct CaseEventRow {
    pub(crate) case_id: String,
    pub(crate) at: Timestamp,
    pub(crate) actor: String,
    pub(crate) kind: &'static str,
    pub(crate) message_id: Option<String>,
    pub(crate) details: Value,
}

/// A change to a case's row; `None` leaves a column as it is.
#[derive(Debug, Default)]
pub(crate) struct CaseChange {
    pub(crate) case_id: String,
    /// The statuses the change applies from: a case that moved on meanwhile is left alone.
    pub(crate) from_status: &'static [&'static str],
    /// The change must apply: a case that moved on meanwhile (another instance, a double
    /// click, a job run twice) fails the whole transaction with a conflict, so that no history
    /// row, event or text is committed for a change that did not happen.
    pub(crate) strict: bool,
    /// Applies only to a case not escalated yet.
    pub(crate) unescalated: bool,
    pub(crate) priority: Option<&'static str>,
    pub(crate) sla_due_at: Option<Timestamp>,
    pub(crate) status: Option<&'static str>,
    pub(crate) outcome: Option<String>,
    pub(crate) assignee_id: Option<String>,
    pub(crate) follow_up: Option<&'static str>,
    pub(crate) customer_wrote_at: Option<Timestamp>,
    pub(crate) escalated_at: Option<Timestamp>,
    pub(crate) resolved_at: Option<Timestamp>,
    pub(crate) closed_at: Option<Timestamp>,
    pub(crate) updated_at: Option<Timestamp>,
}

/// A conversation started: its first state is the opening's, version 1.
#[derive(Debug)]
pub(crate) struct NewConversationRow {
    pub(crate) id: String,
    pub(crate) invitation_id: String,
    pub(crate) contact_id: String,
    pub(crate) channel: String,
    pub(crate) sender: String,
    pub(crate) flow_id: String,
    pub(crate) unit_id: Option<String>,
    pub(crate) state: Value,
    pub(crate) started_at: Timestamp,
}

/// When an opened survey's messages and follow-ups are due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpeningTimes {
    /// When the first question's send job is due.
    pub(crate) send_at: Timestamp,
    /// When the conversation closes if it is still open (the flow's `expire_after`).
    pub(crate) expires_at: Timestamp,
    /// When a customer who has not answered is reminded, if ever.
    pub(crate) remind_at: Option<Timestamp>,
}

/// A conversation's new state, fenced on the version it had when the transaction read it.
#[derive(Debug)]
pub(crate) struct ConversationUpdate {
    pub(crate) id: String,
    /// The version read: the update applies only if nobody changed it since.
    pub(crate) read_version: i64,
    pub(crate) new_version: i64,
    pub(crate) state: Value,
    pub(crate) status: ConversationStatus,
    pub(crate) closed_at: Option<Timestamp>,
    pub(crate) updated_at: Timestamp,
}

#[derive(Debug)]
pub(crate) struct AnswerRow {
    pub(crate) id: String,
    pub(crate) conversation_id: String,
    pub(crate) question_id: String,
    pub(crate) kind: &'static str,
    pub(crate) score: Option<i32>,
    pub(crate) choice: Option<String>,
    pub(crate) text: Option<String>,
    pub(crate) message_id: Option<String>,
    pub(crate) answered_at: Timestamp,
}

#[derive(Debug)]
pub(crate) struct EventRow {
    pub(crate) event_id: String,
    pub(crate) event_type: String,
    pub(crate) contact_id: Option<String>,
    pub(crate) occurred_at: Timestamp,
    pub(crate) payload: Value,
}

#[derive(Debug)]
pub(crate) struct OutgoingRow {
    pub(crate) id: String,
    pub(crate) conversation_id: Option<String>,
    pub(crate) contact_id: String,
    pub(crate) channel: String,
    pub(crate) sender: String,
    pub(crate) purpose: Purpose,
    pub(crate) body: String,
    pub(crate) encoding: &'static str,
    pub(crate) segments: i32,
    /// Started by hearback (an opening, a reminder), not an answer to the customer: counted by
    /// the per-number daily cap.
    pub(crate) unprompted: bool,
    /// The case whose thread it belongs to.
    pub(crate) case_id: Option<String>,
    pub(crate) created_at: Timestamp,
}

#[derive(Debug)]
pub(crate) struct JobRow {
    pub(crate) kind: &'static str,
    pub(crate) payload: Value,
    /// `<kind>:<subject>`: the same job is never queued twice.
    pub(crate) unique_key: String,
    pub(crate) run_at: Timestamp,
    pub(crate) max_attempts: i32,
    pub(crate) created_at: Timestamp,
    /// A text to send now, whatever the hour (an answer to a customer who just wrote): the kind
    /// of job a transaction with a [`WriteSet::lease`] hands straight to its instance's texts lane.
    pub(crate) due_now: bool,
    /// The channel of the text a send job sends.
    pub(crate) channel: Option<String>,
    /// The contact a send job's text goes to.
    pub(crate) contact_id: Option<String>,
}

impl WriteSet {
    /// What the engine decided for `view` after one input: its new state, answers, events and
    /// messages to send (due at `send_at`). `message` is the inbound message that caused it, if
    /// any. A conversation advanced twice in one transaction is written once, with its last
    /// state.
    pub(crate) fn advance(
        &mut self,
        view: &ConversationView,
        advance: &Advance,
        message: Option<&str>,
        send_max_attempts: u32,
        now: Timestamp,
        send_at: Timestamp,
    ) {
        let closed_at = (advance.status != ConversationStatus::Open).then_some(now);
        match self.conversations.iter_mut().find(|c| c.id == view.id) {
            Some(update) => {
                update.new_version = view.version + 1;
                update.state = advance.state.clone();
                update.status = advance.status;
                update.closed_at = closed_at;
                update.updated_at = now;
            }
            None => self.conversations.push(ConversationUpdate {
                id: view.id.clone(),
                read_version: view.version,
                new_version: view.version + 1,
                state: advance.state.clone(),
                status: advance.status,
                closed_at,
                updated_at: now,
            }),
        }
        self.effects(view, advance, message, send_max_attempts, now, send_at);
    }

    /// What a step writes besides the conversation's state: its answers, events and messages
    /// to send. A new conversation, inserted with its first state, has only these.
    pub(crate) fn effects(
        &mut self,
        view: &ConversationView,
        advance: &Advance,
        message: Option<&str>,
        send_max_attempts: u32,
        now: Timestamp,
        send_at: Timestamp,
    ) {
        self.answers
            .extend(advance.answers.iter().map(|answer| AnswerRow {
                id: uuid::Uuid::now_v7().to_string(),
                conversation_id: view.id.clone(),
                question_id: answer.question_id.clone(),
                kind: answer.kind,
                score: answer.score,
                choice: answer.choice.clone(),
                text: answer.text.clone(),
                message_id: message.map(str::to_string),
                answered_at: now,
            }));
        for event in &advance.events {
            self.event(
                event.event_type,
                Some(&view.contact_id),
                event.data.clone(),
                now,
            );
        }
        for text in &advance.messages {
            self.outgoing(
                Some(&view.id),
                &view.contact_id,
                (&view.channel, &view.sender),
                Purpose::Survey,
                text,
                send_max_attempts,
                Timing {
                    now,
                    send_at,
                    // Not an answer to a customer who just wrote (an opening, a reminder).
                    waits_for_window: message.is_none(),
                },
            );
        }
    }

    /// A conversation started for `view` (version 1) with `opening`, the engine's first step:
    /// the conversation, its first question and that question's send job, its expiry, and its
    /// reminder when the flow has one (with the number's `country`, for the window when it runs
    /// late).
    pub(crate) fn open(
        &mut self,
        view: &ConversationView,
        opening: &Advance,
        (times, country): (OpeningTimes, Option<&str>),
        send_max_attempts: u32,
        now: Timestamp,
    ) {
        self.new_conversations.push(NewConversationRow {
            id: view.id.clone(),
            invitation_id: view.invitation_id.clone(),
            contact_id: view.contact_id.clone(),
            channel: view.channel.clone(),
            sender: view.sender.clone(),
            flow_id: view.flow_id.clone(),
            unit_id: view.unit_id.clone(),
            state: opening.state.clone(),
            started_at: now,
        });
        self.effects(view, opening, None, send_max_attempts, now, times.send_at);
        // Each counts from the first question: if that goes out later than planned (held by the
        // window or a guard, a provider outage), so do they (jobs::after_first_message).
        let after_first_message = |at: Timestamp| {
            at.as_millis()
                .saturating_sub(times.send_at.as_millis())
                .max(0)
        };
        self.job(
            EXPIRE_JOB,
            &view.id,
            json!({
                "conversation_id": view.id,
                "after_first_message_ms": after_first_message(times.expires_at),
            }),
            times.expires_at,
            send_max_attempts,
            now,
        );
        if let Some(remind_at) = times.remind_at {
            self.job(
                REMIND_JOB,
                &view.id,
                json!({
                    "conversation_id": view.id,
                    "flow": view.flow_id,
                    "country": country,
                    "after_first_message_ms": after_first_message(remind_at),
                }),
                remind_at,
                send_max_attempts,
                now,
            );
        }
    }

    /// An event of the public contract, for the outbox; events keep the order they are added in.
    pub(crate) fn event(
        &mut self,
        event_type: impl Into<String>,
        contact_id: Option<&str>,
        payload: Value,
        now: Timestamp,
    ) {
        self.events.push(EventRow {
            event_id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            event_type: event_type.into(),
            contact_id: contact_id.map(str::to_string),
            occurred_at: now,
            payload,
        });
    }

    /// An outgoing message sent from `(channel, sender)` and the job that sends it; returns the
    /// message's id.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn outgoing(
        &mut self,
        conversation_id: Option<&str>,
        contact_id: &str,
        (channel, sender): (&str, &str),
        purpose: Purpose,
        body: &str,
        send_max_attempts: u32,
        timing: Timing,
    ) -> String {
        let Timing {
            now,
            send_at,
            waits_for_window,
        } = timing;
        let id = uuid::Uuid::now_v7().to_string();
        let counted = crate::sms::segments(body);
        // `window`: held by the send job until the sending window opens (`jobs::send_sms`).
        let payload = if waits_for_window {
            json!({ "message_id": id, "window": true })
        } else {
            json!({ "message_id": id })
        };
        self.job(SEND_JOB, &id, payload, send_at, send_max_attempts, now);
        let job = self.jobs.last_mut().expect("pushed above");
        job.due_now = !waits_for_window && send_at <= now;
        job.channel = Some(channel.to_string());
        job.contact_id = Some(contact_id.to_string());
        self.outgoing.push(OutgoingRow {
            id: id.clone(),
            conversation_id: conversation_id.map(str::to_string),
            contact_id: contact_id.to_string(),
            channel: channel.to_string(),
            sender: sender.to_string(),
            purpose,
            body: body.to_string(),
            encoding: counted.encoding.as_str(),
            segments: i32::try_from(counted.segments).unwrap_or(i32::MAX),
            unprompted: waits_for_window,
            case_id: None,
            created_at: now,
        });
        id
    }

    /// An entry of a case's history.
    pub(crate) fn case_event(
        &mut self,
        case_id: &str,
        kind: &'static str,
        actor: &str,
        message_id: Option<&str>,
        details: Value,
        at: Timestamp,
    ) {
        self.case_events.push(CaseEventRow {
            case_id: case_id.to_string(),
            at,
            actor: actor.to_string(),
            kind,
            message_id: message_id.map(str::to_string),
            details,
        });
    }

    /// A job of `kind` about `subject`, due at `run_at`.
    pub(crate) fn job(
        &mut self,
        kind: &'static str,
        subject: &str,
        payload: Value,
        run_at: Timestamp,
        max_attempts: u32,
        now: Timestamp,
    ) {
        self.jobs.push(JobRow {
            kind,
            payload,
            unique_key: format!("{kind}:{subject}"),
            run_at,
            max_attempts: i32::try_from(max_attempts).unwrap_or(i32::MAX).max(1),
            created_at: now,
            due_now: false,
            channel: None,
            contact_id: None,
        });
    }
}

/// Writes a [`WriteSet`] through `$tx` (a write transaction of either backend): one statement
/// per table that has rows. Conversations first (a conversation changed by someone else since it
/// was read fails the whole transaction with a conflict), then answers, events, outgoing
/// messages and their jobs. Inbound messages that answers refer to must be written before.
/// Evaluates to the jobs written claimed under the write set's lease (none without one).
macro_rules! flush_writes {
    ($tx:expr, $writes:expr) => {{
        let writes: &$crate::storage::WriteSet = $writes;
        use $crate::storage::bulk::BulkWrite;
        BulkWrite::insert_new_conversations(&mut *$tx, &writes.new_conversations).await?;
        if !writes.conversations.is_empty() {
            // A conversation's first answer makes it a response of the period (quotas).
            let mut first_answers = $crate::storage::bulk::FirstAnswers::new();
            for a in &writes.answers {
                let first = first_answers.entry(a.conversation_id.as_str()).or_insert(a.answered_at);
                *first = (*first).min(a.answered_at);
            }
            let updated = BulkWrite::update_conversations(&mut *$tx, &writes.conversations, &first_answers)
                .await?;
            if updated != writes.conversations.len() as u64 {
                return Err($crate::storage::StorageError::Conflict(
                    "a conversation changed while this message was applied; the provider's retry will apply it",
                ));
            }
        }
        BulkWrite::insert_answers(&mut *$tx, &writes.answers).await?;
        BulkWrite::insert_events(&mut *$tx, &writes.events).await?;
        BulkWrite::insert_outgoing(&mut *$tx, &writes.outgoing).await?;
        let claimed = BulkWrite::insert_jobs(&mut *$tx, &writes.jobs, writes.lease.as_ref()).await?;
        if !writes.case_events.is_empty() {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO case_events (case_id, at, actor, kind, message_id, details) ",
            );
            insert.push_values(&writes.case_events, |mut row, e| {
                row.push_bind(&e.case_id)
                    .push_bind(e.at)
                    .push_bind(&e.actor)
                    .push_bind(e.kind)
                    .push_bind(&e.message_id)
                    .push_bind(sqlx::types::Json(&e.details));
            });
            let kept = $crate::storage::kept(&$tx);
            insert.build().persistent(kept).execute(&mut *$tx).await?;
        }
        // Case changes are rare (a customer's text, an agent's action): a statement each.
        for change in &writes.case_changes {
            let mut update = sqlx::QueryBuilder::new("UPDATE cases SET updated_at = COALESCE(");
            update.push_bind(change.updated_at).push(", updated_at)");
            macro_rules! set {
                ($column:literal, $value:expr) => {
                    if let Some(value) = &$value {
                        update.push(concat!(", ", $column, " = ")).push_bind(value.clone());
                    }
                };
            }
            set!("status", change.status);
            set!("outcome", change.outcome);
            set!("assignee_id", change.assignee_id);
            set!("follow_up", change.follow_up);
            set!("customer_wrote_at", change.customer_wrote_at);
            set!("escalated_at", change.escalated_at);
            set!("resolved_at", change.resolved_at);
            set!("closed_at", change.closed_at);
            set!("priority", change.priority);
            set!("sla_due_at", change.sla_due_at);
            update.push(" WHERE id = ").push_bind(&change.case_id);
            if change.unescalated {
                update.push(" AND escalated_at IS NULL");
            }
            if !change.from_status.is_empty() {
                update.push(" AND status IN (");
                let mut list = update.separated(", ");
                for status in change.from_status {
                    list.push_bind(*status);
                }
                update.push(")");
            }
            let applied = update.build().execute(&mut *$tx).await?.rows_affected();
            if change.strict && applied == 0 {
                return Err($crate::storage::StorageError::Conflict(
                    "the case changed meanwhile; read it again",
                ));
            }
        }
        claimed
    }};
}
pub(crate) use flush_writes;

/// Writes the cases a transaction opens, through `$tx`; before its messages, which may belong
/// to them.
macro_rules! insert_new_cases {
    ($tx:expr, $writes:expr) => {{
        let writes: &$crate::storage::WriteSet = $writes;
        if !writes.new_cases.is_empty() {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO cases (id, contact_id, unit_id, conversation_id, channel, sender, rule_id, priority, \
                 status, sla_due_at, customer_wrote_at, opened_at, updated_at) ",
            );
            insert.push_values(&writes.new_cases, |mut row, c| {
                row.push_bind(&c.id)
                    .push_bind(&c.contact_id)
                    .push_bind(&c.unit_id)
                    .push_bind(&c.conversation_id)
                    .push_bind(&c.channel)
                    .push_bind(&c.sender)
                    .push_bind(&c.rule_id)
                    .push_bind(&c.priority)
                    .push_bind("open")
                    .push_bind(c.sla_due_at)
                    .push_bind(c.opened_at)
                    .push_bind(c.opened_at)
                    .push_bind(c.opened_at);
            });
            let kept = $crate::storage::kept(&$tx);
            insert.build().persistent(kept).execute(&mut *$tx).await?;
        }
    }};
}
pub(crate) use insert_new_cases;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{NewAnswer, NewEvent};
    use sqlx::types::Json;

    fn view(version: i64) -> ConversationView {
        ConversationView {
            id: "c1".into(),
            invitation_id: "i1".into(),
            event_id: "e1".into(),
            flow_id: "delivery".into(),
            contact_id: "k1".into(),
            channel: "twilio".into(),
            sender: "+33757000000".into(),
            state: Json(json!({"step": 0})),
            version,
            unit_id: None,
        }
    }

    fn advance(step: i64, status: ConversationStatus) -> Advance {
        Advance {
            state: json!({ "step": step }),
            status,
            answers: vec![NewAnswer {
                question_id: format!("q{step}"),
                kind: "nps",
                score: Some(9),
                choice: None,
                text: None,
            }],
            events: vec![NewEvent {
                event_type: "response.answered",
                data: json!({ "step": step }),
            }],
            messages: vec![format!("Question {}", step + 1)],
        }
    }

    #[test]
    fn a_conversation_advanced_twice_is_written_once_with_its_last_state_fenced_on_the_first_read()
    {
        let now = Timestamp::from_millis(1_700_000_000_000).unwrap();
        let mut writes = WriteSet::default();
        writes.advance(
            &view(3),
            &advance(1, ConversationStatus::Open),
            Some("m1"),
            5,
            now,
            now,
        );
        writes.advance(
            &view(4),
            &advance(2, ConversationStatus::Completed),
            Some("m2"),
            5,
            now,
            now,
        );
        assert_eq!(writes.conversations.len(), 1);
        let update = &writes.conversations[0];
        assert_eq!((update.read_version, update.new_version), (3, 5));
        assert_eq!(update.state, json!({"step": 2}));
        assert_eq!(update.status, ConversationStatus::Completed);
        assert_eq!(update.closed_at, Some(now));
        // Everything else is kept per advance, in order.
        let answered: Vec<_> = writes
            .answers
            .iter()
            .map(|a| (a.question_id.as_str(), a.message_id.as_deref()))
            .collect();
        assert_eq!(answered, [("q1", Some("m1")), ("q2", Some("m2"))]);
        assert_eq!(writes.events.len(), 2);
        assert_eq!(writes.outgoing.len(), 2);
        assert_eq!(writes.outgoing[1].body, "Question 3");
    }

    #[test]
    fn every_outgoing_message_has_one_send_job_keyed_on_its_id() {
        let now = Timestamp::from_millis(1_700_000_000_000).unwrap();
        let mut writes = WriteSet::default();
        let id = writes.outgoing(
            None,
            "k1",
            ("twilio", "+33757000000"),
            Purpose::Help,
            "Répondez STOP pour ne plus recevoir de SMS.",
            0,
            Timing::reply(now),
        );
        assert_eq!(writes.jobs.len(), 1);
        let job = &writes.jobs[0];
        assert_eq!(job.unique_key, format!("sms.send:{id}"));
        assert_eq!(job.payload, json!({ "message_id": id }));
        // At least one attempt, whatever the configuration says.
        assert_eq!(job.max_attempts, 1);
        assert_eq!(writes.outgoing[0].encoding, "GSM-7");
    }
}
