//! Cases: an alert about one unhappy customer, handled by a person until it is closed.
//!
//! A case opens in the transaction of the answer that raised its alert, with its history's first
//! entry, its `alert.raised` and `case.opened` events, its notice by e-mail and its SLA timer. A
//! customer has at most one case that is not closed (a unique index says so): a later alert joins
//! it. While it lasts, the customer's texts that no survey waits for go to its thread, each with a
//! `case.message` event. Every change is a row of `case_events` and an event of the contract,
//! committed with the change.

use super::write_set::{CaseChange, NewCaseRow};
use super::{
    BeginWrite, InboundContext, InboundPlan, Purpose, Storage, StorageError, Timing, WriteSet,
    flush_writes, on_pool,
};
use crate::time::Timestamp;
use serde_json::{Value, json};
use sqlx::types::Json;
use std::collections::HashMap;
use std::time::Duration;

/// The job that e-mails a case's notice (`opened` or `escalated`) to the people it concerns.
pub const CASE_NOTICE_JOB: &str = "case.notice";
/// The job that escalates a case nobody took before its SLA was up.
pub const CASE_SLA_JOB: &str = "case.sla";
/// The job that closes a resolved case whose follow-up went unanswered.
pub const CASE_CLOSE_JOB: &str = "case.close";

/// Statuses of a case that is not closed.
const ACTIVE: &[&str] = &["open", "in_progress", "resolved"];
/// Statuses of a case a person still works on.
const WORKED_ON: &[&str] = &["open", "in_progress"];

/// A customer's case that is not closed, as the inbound path sees it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActiveCase {
    pub id: String,
    pub contact_id: String,
    pub channel: String,
    pub sender: String,
    pub status: String,
    /// `asked` while the recovery question waits for its answer.
    pub follow_up: Option<String>,
    /// Whether the recovery question has gone out: until then (the window or a guard may hold
    /// it) the customer's yes or no answers something else, and is not read as its answer.
    pub follow_up_out: bool,
    pub priority: String,
    pub sla_due_at: Timestamp,
}

/// How pressing a priority is: a later, graver alert raises its case to it.
fn severity(priority: &str) -> u8 {
    match priority {
        "urgent" => 3,
        "high" => 2,
        "normal" => 1,
        _ => 0,
    }
}

/// An alert a step raised, as the rules decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub rule_id: String,
    pub priority: &'static str,
    pub sla: Duration,
    /// Addresses the rule names, besides the unit's people.
    pub notify: Vec<String>,
    pub reasons: Vec<String>,
    /// Whether the case's notices go out by e-mail (an instance without SMTP sends none).
    pub email: bool,
}

/// What a customer's text is to their case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseInput {
    /// A text for the agent.
    Thread,
    /// The answer to the recovery question: was the problem solved?
    FollowUp(bool),
}

/// Writes what one customer message does to cases: alerts (a new case, or joining the one the
/// customer has), a text for the thread, the follow-up's answer. Returns the case the message
/// belongs to, if any. `cases` is kept as the batch's later messages must see it.
pub(crate) fn apply_case_effects(
    writes: &mut WriteSet,
    cases: &mut HashMap<String, ActiveCase>,
    contact_id: &str,
    context: &InboundContext,
    plan: &InboundPlan,
    (channel, sender, body): (&str, &str, &str),
    now: Timestamp,
) -> Option<String> {
    let conversation = context.conversation.as_ref();
    let message_id = context.message_id.as_str();
    // The gravest first: a case opened by a step that fires several rules takes its priority,
    // and its notice tells every address and reason those rules name.
    let mut alerts: Vec<&NewAlert> = plan.alerts.iter().collect();
    alerts.sort_by_key(|a| std::cmp::Reverse(severity(a.priority)));
    let mut step_notify: Vec<&String> = alerts.iter().flat_map(|a| &a.notify).collect();
    let mut step_reasons: Vec<&String> = alerts.iter().flat_map(|a| &a.reasons).collect();
    for list in [&mut step_notify, &mut step_reasons] {
        let mut seen = std::collections::HashSet::new();
        list.retain(|item| seen.insert(*item));
    }
    let case_before_this_step = cases.contains_key(contact_id);
    for alert in alerts {
        let alert_data = |case_id: &str| {
            json!({
                "case": { "id": case_id },
                "contact": { "id": contact_id },
                "conversation": conversation.map(|c| json!({
                    "id": c.id, "invitation_id": c.invitation_id, "event_id": c.event_id, "flow": c.flow_id,
                })),
                "rule": alert.rule_id,
                "priority": alert.priority,
                "reasons": alert.reasons,
            })
        };
        if let Some(case) = cases.get_mut(contact_id) {
            let case_id = case.id.clone();
            // A graver alert raises the case: its priority, an SLA no later than the alert's,
            // and a notice (once per priority, as a priority only goes up).
            let raised = severity(alert.priority) > severity(&case.priority);
            writes.case_event(
                &case_id,
                "alert",
                "system",
                Some(message_id),
                json!({ "rule": alert.rule_id, "reasons": alert.reasons, "raised_to": raised.then_some(alert.priority) }),
                now,
            );
            writes.event("alert.raised", Some(contact_id), alert_data(&case_id), now);
            if raised {
                let sla_due_at = case.sla_due_at.min(now + alert.sla);
                writes.case_changes.push(CaseChange {
                    case_id: case_id.clone(),
                    from_status: ACTIVE,
                    priority: Some(alert.priority),
                    sla_due_at: Some(sla_due_at),
                    updated_at: Some(now),
                    ..CaseChange::default()
                });
                if alert.email {
                    writes.job(
                        CASE_NOTICE_JOB,
                        &format!("{case_id}:{}", alert.priority),
                        json!({ "case_id": case_id, "notice": "opened", "notify": alert.notify, "reasons": alert.reasons }),
                        now,
                        MAX_NOTICE_ATTEMPTS,
                        now,
                    );
                }
                writes.job(
                    CASE_SLA_JOB,
                    &format!("{case_id}:{}", alert.priority),
                    json!({ "case_id": case_id }),
                    sla_due_at,
                    MAX_NOTICE_ATTEMPTS,
                    now,
                );
                case.priority = alert.priority.to_string();
                case.sla_due_at = sla_due_at;
            } else if alert.email && case_before_this_step && !alert.notify.is_empty() {
                // A rule that joins a case without raising it still tells the addresses it
                // names (once per rule and case); the unit's people know the case already.
                writes.job(
                    CASE_NOTICE_JOB,
                    &format!("{case_id}:rule:{}", alert.rule_id),
                    json!({ "case_id": case_id, "notice": "alert", "notify": alert.notify, "reasons": alert.reasons }),
                    now,
                    MAX_NOTICE_ATTEMPTS,
                    now,
                );
            }
            continue;
        }
        let case_id = format!("case_{}", uuid::Uuid::now_v7().simple());
        let sla_due_at = now + alert.sla;
        writes.new_cases.push(NewCaseRow {
            id: case_id.clone(),
            contact_id: contact_id.to_string(),
            unit_id: conversation.and_then(|c| c.unit_id.clone()),
            conversation_id: conversation.map(|c| c.id.clone()),
            channel: channel.to_string(),
            sender: sender.to_string(),
            rule_id: alert.rule_id.clone(),
            priority: alert.priority.to_string(),
            sla_due_at,
            opened_at: now,
        });
        writes.case_event(
            &case_id,
            "opened",
            "system",
            Some(message_id),
            json!({ "rule": alert.rule_id, "reasons": alert.reasons, "priority": alert.priority }),
            now,
        );
        writes.event("alert.raised", Some(contact_id), alert_data(&case_id), now);
        writes.event(
            "case.opened",
            Some(contact_id),
            json!({
                "case": {
                    "id": case_id,
                    "status": "open",
                    "priority": alert.priority,
                    "rule": alert.rule_id,
                    "unit_id": conversation.and_then(|c| c.unit_id.clone()),
                    "sla_due_at": sla_due_at,
                },
                "contact": { "id": contact_id },
            }),
            now,
        );
        if alert.email {
            writes.job(
                CASE_NOTICE_JOB,
                &format!("{case_id}:opened"),
                json!({ "case_id": case_id, "notice": "opened", "notify": step_notify, "reasons": step_reasons }),
                now,
                MAX_NOTICE_ATTEMPTS,
                now,
            );
        }
        writes.job(
            CASE_SLA_JOB,
            &case_id,
            json!({ "case_id": case_id }),
            sla_due_at,
            MAX_NOTICE_ATTEMPTS,
            now,
        );
        cases.insert(
            contact_id.to_string(),
            ActiveCase {
                id: case_id,
                contact_id: contact_id.to_string(),
                channel: channel.to_string(),
                sender: sender.to_string(),
                status: "open".into(),
                follow_up: None,
                follow_up_out: false,
                priority: alert.priority.to_string(),
                sla_due_at,
            },
        );
    }

    let Some(case) = context.case.as_ref() else {
        // The text that opened a case starts its thread.
        return writes
            .new_cases
            .iter()
            .find(|c| c.contact_id == contact_id)
            .map(|c| c.id.clone());
    };
    // Whatever took the text, the customer just wrote: an agent may answer at any hour.
    writes.case_changes.push(CaseChange {
        case_id: case.id.clone(),
        customer_wrote_at: Some(now),
        updated_at: Some(now),
        ..CaseChange::default()
    });
    let Some(input) = plan.case else {
        // A survey or a keyword took the text: the agent sees it in the thread all the same.
        return Some(case.id.clone());
    };
    writes.case_event(
        &case.id,
        "message_in",
        "customer",
        Some(message_id),
        json!({}),
        now,
    );
    writes.event(
        "case.message",
        Some(contact_id),
        json!({
            "case": { "id": case.id },
            "contact": { "id": contact_id },
            "message": { "id": message_id, "direction": "inbound", "text": body },
        }),
        now,
    );
    if let CaseInput::FollowUp(solved) = input {
        let answer = if solved { "yes" } else { "no" };
        writes.case_changes.push(CaseChange {
            case_id: case.id.clone(),
            from_status: &["resolved"],
            strict: true,
            status: Some("closed"),
            follow_up: Some(answer),
            closed_at: Some(now),
            updated_at: Some(now),
            ..CaseChange::default()
        });
        writes.case_event(
            &case.id,
            "follow_up",
            "customer",
            Some(message_id),
            json!({ "answer": answer }),
            now,
        );
        writes.case_event(
            &case.id,
            "closed",
            "system",
            None,
            json!({ "recovered": solved }),
            now,
        );
        writes.event(
            "case.closed",
            Some(contact_id),
            json!({
                "case": { "id": case.id, "status": "closed", "follow_up": answer, "recovered": solved },
                "contact": { "id": contact_id },
            }),
            now,
        );
        cases.remove(contact_id);
    }
    Some(case.id.clone())
}

/// Attempts for a notice's e-mail and a case's timers: an SMTP server down for a while is
/// waited for with backoff.
const MAX_NOTICE_ATTEMPTS: u32 = 10;

/// A case as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct CaseRecord {
    pub id: String,
    pub contact_id: String,
    pub phone: String,
    pub unit_id: Option<String>,
    pub unit_code: Option<String>,
    pub conversation_id: Option<String>,
    pub channel: String,
    pub sender: String,
    pub rule_id: String,
    pub priority: String,
    pub status: String,
    pub outcome: Option<String>,
    pub assignee_id: Option<String>,
    pub assignee_email: Option<String>,
    pub sla_due_at: Timestamp,
    pub escalated_at: Option<Timestamp>,
    pub follow_up: Option<String>,
    pub customer_wrote_at: Option<Timestamp>,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
}

const CASE_COLUMNS: &str = "k.id, k.contact_id, ct.phone, k.unit_id, u.code AS unit_code, k.conversation_id, \
     k.channel, k.sender, k.rule_id, k.priority, k.status, k.outcome, k.assignee_id, us.email AS assignee_email, \
     k.sla_due_at, k.escalated_at, k.follow_up, k.customer_wrote_at, k.opened_at, k.updated_at, k.resolved_at, k.closed_at \
     FROM cases k JOIN contacts ct ON ct.id = k.contact_id LEFT JOIN units u ON u.id = k.unit_id \
     LEFT JOIN users us ON us.id = k.assignee_id";

/// One entry of a case's history.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CaseEventRecord {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    pub kind: String,
    pub message_id: Option<String>,
    pub details: Json<Value>,
}

/// A text of a case's thread.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ThreadMessage {
    pub id: String,
    pub direction: String,
    pub body: String,
    pub status: String,
    pub error_code: Option<String>,
    pub created_at: Timestamp,
}

/// Which cases a caller may see and change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseScope {
    /// An integration or an admin: every case.
    All,
    /// A user: the cases of these units (theirs and its sub-units).
    Units(Vec<String>),
}

impl CaseScope {
    /// Whether a case of this unit is in the scope.
    pub fn allows(&self, unit_id: Option<&str>) -> bool {
        match self {
            CaseScope::All => true,
            CaseScope::Units(units) => unit_id.is_some_and(|u| units.iter().any(|s| s == u)),
        }
    }
}

/// Filters of the case list.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub status: Option<String>,
    /// Open cases past their SLA, not taken.
    pub overdue_at: Option<Timestamp>,
    /// Opened after this case id (ids grow with time): the next page.
    pub after: Option<String>,
    pub limit: u32,
}

/// What an agent's text needs.
#[derive(Debug, Clone)]
pub struct CaseText<'a> {
    pub case_id: &'a str,
    pub body: &'a str,
    pub actor: &'a str,
    /// Waits for the sending window: the customer has not written in the last hour.
    pub waits_for_window: bool,
    pub send_max_attempts: u32,
    pub now: Timestamp,
}

/// A resolution.
#[derive(Debug, Clone)]
pub struct Resolution<'a> {
    pub case_id: &'a str,
    pub outcome: &'a str,
    pub actor: &'a str,
    /// The recovery question, in the customer's language, when one is asked.
    pub follow_up: Option<String>,
    /// When the case closes if the follow-up is not answered.
    pub close_at: Timestamp,
    pub send_max_attempts: u32,
    pub now: Timestamp,
}

impl Storage {
    /// One case, if the scope allows it.
    pub async fn case(
        &self,
        id: &str,
        scope: &CaseScope,
    ) -> Result<Option<CaseRecord>, StorageError> {
        let record: Option<CaseRecord> = on_pool!(self, |pool| {
            sqlx::query_as(&format!("SELECT {CASE_COLUMNS} WHERE k.id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        Ok(record.filter(|r| scope.allows(r.unit_id.as_deref())))
    }

    /// A case's history and thread, oldest first.
    pub async fn case_history(
        &self,
        id: &str,
    ) -> Result<(Vec<CaseEventRecord>, Vec<ThreadMessage>), StorageError> {
        Ok(on_pool!(self, |pool| {
            let events = sqlx::query_as(
                "SELECT id, at, actor, kind, message_id, details FROM case_events WHERE case_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let messages = sqlx::query_as(
                "SELECT id, direction, body, status, error_code, created_at FROM messages \
                 WHERE case_id = $1 ORDER BY created_at, id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            Ok::<_, sqlx::Error>((events, messages))
        })?)
    }

    /// Cases in the scope, newest first, a page at a time.
    pub async fn cases(
        &self,
        scope: &CaseScope,
        filter: &CaseFilter,
    ) -> Result<Vec<CaseRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            let mut query = sqlx::QueryBuilder::new(format!("SELECT {CASE_COLUMNS} WHERE 1 = 1"));
            if let CaseScope::Units(units) = scope {
                query.push(" AND k.unit_id IN (");
                let mut list = query.separated(", ");
                // No unit at all: an empty list would be a syntax error.
                list.push_bind("");
                for unit in units {
                    list.push_bind(unit.clone());
                }
                query.push(")");
            }
            if let Some(status) = &filter.status {
                query.push(" AND k.status = ").push_bind(status.clone());
            }
            if let Some(at) = filter.overdue_at {
                query
                    .push(" AND k.status = 'open' AND k.sla_due_at < ")
                    .push_bind(at);
            }
            if let Some(after) = &filter.after {
                query.push(" AND k.id < ").push_bind(after.clone());
            }
            query
                .push(" ORDER BY k.id DESC LIMIT ")
                .push_bind(i64::from(filter.limit));
            query.build_query_as().fetch_all(pool).await
        })?)
    }

    /// Assigns a case to a user; an open case is then in progress (taken: its SLA is met).
    pub async fn assign_case(
        &self,
        id: &str,
        assignee: &UserRecord,
        actor: &str,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let case = self.case(id, &CaseScope::All).await?;
        let case = case.ok_or(StorageError::NotFound("case"))?;
        if !WORKED_ON.contains(&case.status.as_str()) {
            return Err(StorageError::Conflict(
                "the case is resolved or closed; it cannot be assigned",
            ));
        }
        let mut writes = WriteSet::default();
        writes.case_changes.push(CaseChange {
            case_id: id.to_string(),
            from_status: WORKED_ON,
            strict: true,
            status: Some("in_progress"),
            assignee_id: Some(assignee.id.clone()),
            updated_at: Some(now),
            ..CaseChange::default()
        });
        writes.case_event(
            id,
            "assigned",
            actor,
            None,
            json!({ "assignee": { "id": assignee.id, "email": assignee.email } }),
            now,
        );
        writes.event(
            "case.assigned",
            Some(&case.contact_id),
            json!({
                "case": { "id": id, "status": "in_progress" },
                "assignee": { "id": assignee.id, "email": assignee.email },
                "contact": { "id": case.contact_id },
            }),
            now,
        );
        self.write_case(&case.contact_id, &writes).await
    }

    /// Queues an agent's text to the customer, from the channel and number the customer talks
    /// to. Returns the message's id.
    /// The survey that raised the case, if it still waits for answers, is closed in the same
    /// transaction by `end_survey` (the engine's expiry): from then on the customer's texts are
    /// for the agent.
    pub async fn send_case_text<P>(
        &self,
        text: &CaseText<'_>,
        end_survey: P,
    ) -> Result<String, StorageError>
    where
        P: FnOnce(&super::ConversationView) -> Option<super::Advance> + Send,
    {
        let case = self.case(text.case_id, &CaseScope::All).await?;
        let case = case.ok_or(StorageError::NotFound("case"))?;
        if case.status == "closed" {
            return Err(StorageError::Conflict(
                "the case is closed; its thread takes no more texts",
            ));
        }
        let mut writes = WriteSet::default();
        // An agent's text is not hearback's own: the per-number daily cap does not count it.
        let message_id = writes.case_text(
            &case,
            text.body,
            text.send_max_attempts,
            Timing {
                now: text.now,
                send_at: text.now,
                waits_for_window: text.waits_for_window,
            },
            false,
        );
        writes.case_event(
            &case.id,
            "message_out",
            text.actor,
            Some(&message_id),
            json!({}),
            text.now,
        );
        writes.event(
            "case.message",
            Some(&case.contact_id),
            json!({
                "case": { "id": case.id },
                "contact": { "id": case.contact_id },
                "message": { "id": message_id, "direction": "outbound", "text": text.body, "author": text.actor },
            }),
            text.now,
        );
        // Not closed meanwhile (by the customer's answer to the recovery question, say).
        writes.case_changes.push(CaseChange {
            case_id: case.id.clone(),
            from_status: ACTIVE,
            strict: true,
            updated_at: Some(text.now),
            ..CaseChange::default()
        });
        if case.status == "open" {
            // Writing to the customer takes the case (unless someone took it meanwhile).
            writes.case_changes.push(CaseChange {
                case_id: case.id.clone(),
                from_status: &["open"],
                status: Some("in_progress"),
                updated_at: Some(text.now),
                ..CaseChange::default()
            });
        }
        self.write_case_ending_survey(
            &case,
            &writes,
            end_survey,
            (text.send_max_attempts, text.now),
        )
        .await?;
        Ok(message_id)
    }

    /// Resolves a case with its outcome, ends the survey that raised it if still open (its
    /// later answers could not reach a resolved case), and, if asked, texts the recovery
    /// question; the case closes when the customer answers it, or at `close_at`.
    pub async fn resolve_case<P>(
        &self,
        resolution: &Resolution<'_>,
        end_survey: P,
    ) -> Result<(), StorageError>
    where
        P: FnOnce(&super::ConversationView) -> Option<super::Advance> + Send,
    {
        let now = resolution.now;
        let case = self.case(resolution.case_id, &CaseScope::All).await?;
        let case = case.ok_or(StorageError::NotFound("case"))?;
        if !WORKED_ON.contains(&case.status.as_str()) {
            return Err(StorageError::Conflict("the case is already resolved"));
        }
        let mut writes = WriteSet::default();
        writes.case_changes.push(CaseChange {
            case_id: case.id.clone(),
            from_status: WORKED_ON,
            strict: true,
            status: Some("resolved"),
            outcome: Some(resolution.outcome.to_string()),
            follow_up: resolution.follow_up.as_ref().map(|_| "asked"),
            resolved_at: Some(now),
            updated_at: Some(now),
            ..CaseChange::default()
        });
        writes.case_event(
            &case.id,
            "resolved",
            resolution.actor,
            None,
            json!({ "outcome": resolution.outcome, "follow_up": resolution.follow_up.is_some() }),
            now,
        );
        writes.event(
            "case.resolved",
            Some(&case.contact_id),
            json!({
                "case": { "id": case.id, "status": "resolved", "outcome": resolution.outcome },
                "contact": { "id": case.contact_id },
                "follow_up": resolution.follow_up.is_some(),
            }),
            now,
        );
        if let Some(question) = &resolution.follow_up {
            // hearback asks it: counted by the per-number daily cap, in the sending window.
            let message_id = writes.case_text(
                &case,
                question,
                resolution.send_max_attempts,
                Timing {
                    now,
                    send_at: now,
                    waits_for_window: true,
                },
                true,
            );
            writes.case_event(
                &case.id,
                "message_out",
                "system",
                Some(&message_id),
                json!({ "follow_up": true }),
                now,
            );
        }
        writes.job(
            CASE_CLOSE_JOB,
            &case.id,
            json!({ "case_id": case.id }),
            if resolution.follow_up.is_some() {
                resolution.close_at
            } else {
                now
            },
            MAX_NOTICE_ATTEMPTS,
            now,
        );
        self.write_case_ending_survey(
            &case,
            &writes,
            end_survey,
            (resolution.send_max_attempts, now),
        )
        .await
    }

    /// Closes a resolved case (its follow-up unanswered, or none asked); false when it is not
    /// resolved any more.
    pub async fn close_resolved_case(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let Some(case) = self.case(id, &CaseScope::All).await? else {
            return Ok(false);
        };
        if case.status != "resolved" {
            return Ok(false);
        }
        let mut writes = WriteSet::default();
        writes.case_changes.push(CaseChange {
            case_id: case.id.clone(),
            from_status: &["resolved"],
            strict: true,
            status: Some("closed"),
            closed_at: Some(now),
            updated_at: Some(now),
            ..CaseChange::default()
        });
        writes.case_event(&case.id, "closed", "system", None, json!({}), now);
        writes.event(
            "case.closed",
            Some(&case.contact_id),
            json!({
                "case": { "id": case.id, "status": "closed", "outcome": case.outcome, "follow_up": case.follow_up },
                "contact": { "id": case.contact_id },
            }),
            now,
        );
        self.write_case_once(&case.contact_id, &writes).await
    }

    /// Escalates a case still open (not taken) at its SLA: once. Returns whether it did.
    pub async fn escalate_case(
        &self,
        id: &str,
        email: bool,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let Some(case) = self.case(id, &CaseScope::All).await? else {
            return Ok(false);
        };
        if case.status != "open" || case.escalated_at.is_some() || case.sla_due_at > now {
            return Ok(false);
        }
        let mut writes = WriteSet::default();
        writes.case_changes.push(CaseChange {
            case_id: case.id.clone(),
            from_status: &["open"],
            strict: true,
            unescalated: true,
            escalated_at: Some(now),
            updated_at: Some(now),
            ..CaseChange::default()
        });
        writes.case_event(
            &case.id,
            "escalated",
            "system",
            None,
            json!({ "sla_due_at": case.sla_due_at }),
            now,
        );
        writes.event(
            "case.escalated",
            Some(&case.contact_id),
            json!({
                "case": { "id": case.id, "status": case.status, "sla_due_at": case.sla_due_at, "unit_id": case.unit_id },
                "contact": { "id": case.contact_id },
            }),
            now,
        );
        if email {
            writes.job(
                CASE_NOTICE_JOB,
                &format!("{}:escalated", case.id),
                json!({ "case_id": case.id, "notice": "escalated" }),
                now,
                MAX_NOTICE_ATTEMPTS,
                now,
            );
        }
        self.write_case_once(&case.contact_id, &writes).await
    }

    /// [`Storage::write_case`] for a job: `false` when the case moved on meanwhile (the change
    /// was made by another run, or is no longer due).
    async fn write_case_once(
        &self,
        contact_id: &str,
        writes: &WriteSet,
    ) -> Result<bool, StorageError> {
        match self.write_case(contact_id, writes).await {
            Ok(()) => Ok(true),
            Err(StorageError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Commits a case's changes with the customer's row locked, as their texts are.
    async fn write_case(&self, contact_id: &str, writes: &WriteSet) -> Result<(), StorageError> {
        let _writing = self.writing().await;
        let lock = self.row_lock();
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(&format!("SELECT id FROM contacts WHERE id = $1{lock}"))
                .bind(contact_id)
                .fetch_optional(&mut *tx)
                .await?;
            flush_writes!(tx, writes);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Writes `writes` for `case` under its customer's lock, after ending the survey that raised
    /// it if that is still open (`end_survey`: the engine's expiry, written first): from an
    /// agent's first text or the case's resolution on, the case has the conversation.
    async fn write_case_ending_survey<P>(
        &self,
        case: &CaseRecord,
        writes: &WriteSet,
        end_survey: P,
        (send_max_attempts, now): (u32, Timestamp),
    ) -> Result<(), StorageError>
    where
        P: FnOnce(&super::ConversationView) -> Option<super::Advance> + Send,
    {
        let _writing = self.writing().await;
        let lock = self.row_lock();
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(&format!("SELECT id FROM contacts WHERE id = $1{lock}"))
                .bind(&case.contact_id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(conversation) = &case.conversation_id {
                let view: Option<super::ConversationView> =
                    sqlx::query_as(super::conversations::OPEN_CONVERSATION_VIEW)
                        .bind(conversation)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some((view, advance)) =
                    view.and_then(|view| end_survey(&view).map(|advance| (view, advance)))
                {
                    let mut ending = WriteSet::default();
                    ending.advance(&view, &advance, None, send_max_attempts, now, now);
                    flush_writes!(tx, &ending);
                }
            }
            flush_writes!(tx, writes);
            tx.commit().await?;
            Ok::<_, StorageError>(())
        })
    }

    /// The language to write to a case's customer in: their survey's (the flow's first when the
    /// invitation gave no locale it speaks), else their locale's.
    pub async fn case_language(
        &self,
        case: &CaseRecord,
    ) -> Result<Option<crate::lang::Lang>, StorageError> {
        if let Some(conversation) = &case.conversation_id {
            let state: Option<Json<Value>> = on_pool!(self, |pool| {
                sqlx::query_scalar("SELECT state FROM conversations WHERE id = $1")
                    .bind(conversation)
                    .fetch_optional(pool)
                    .await
            })?;
            // Emptied by an erasure or the retention run: `{}`, no language.
            let surveyed = state
                .and_then(|state| state.0.get("lang").cloned())
                .and_then(|lang| serde_json::from_value(lang).ok());
            if surveyed.is_some() {
                return Ok(surveyed);
            }
        }
        let locale = self.contact_locale(&case.contact_id).await?;
        Ok(locale.and_then(|locale| locale.parse().ok()))
    }

    /// The locale a contact's invitations gave, if any.
    pub async fn contact_locale(&self, contact_id: &str) -> Result<Option<String>, StorageError> {
        let locale: Option<Option<String>> = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT locale FROM contacts WHERE id = $1")
                .bind(contact_id)
                .fetch_optional(pool)
                .await
        })?;
        Ok(locale.flatten())
    }
}

/// A person who handles cases.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    pub unit_id: Option<String>,
    pub created_at: Timestamp,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    pub unit_id: Option<String>,
    pub password_hash: Option<String>,
}

const USER_COLUMNS: &str = "id, email, name, role, unit_id, created_at";

impl Storage {
    pub async fn create_user(
        &self,
        new: &NewUser,
        now: Timestamp,
    ) -> Result<UserRecord, StorageError> {
        let _writing = self.writing().await;
        let id = format!("usr_{}", uuid::Uuid::now_v7().simple());
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO users (id, email, name, role, unit_id, password_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&id)
            // Kept lowercased: an address is one person however it is typed.
            .bind(new.email.to_lowercase())
            .bind(&new.name)
            .bind(&new.role)
            .bind(&new.unit_id)
            .bind(&new.password_hash)
            .bind(now)
            .execute(pool)
            .await
            .map(drop)
            .map_err(|e| {
                super::Violations {
                    unique: "a user with this e-mail",
                    foreign_key: "the user's unit",
                }
                .map(e)
            })
        })?;
        Ok(UserRecord {
            id,
            email: new.email.to_lowercase(),
            name: new.name.clone(),
            role: new.role.clone(),
            unit_id: new.unit_id.clone(),
            created_at: now,
        })
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE email = $1 AND disabled_at IS NULL"
            ))
            .bind(email.to_lowercase())
            .fetch_optional(pool)
            .await
        })?)
    }

    pub async fn user(&self, id: &str) -> Result<Option<UserRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND disabled_at IS NULL"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// A unit's id and those of every unit below it.
    pub async fn unit_subtree(&self, unit_id: &str) -> Result<Vec<String>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(
                "WITH RECURSIVE subtree(id) AS (SELECT id FROM units WHERE id = $1 \
                 UNION SELECT u.id FROM units u JOIN subtree s ON u.parent_id = s.id) SELECT id FROM subtree",
            )
            .bind(unit_id)
            .fetch_all(pool)
            .await
        })?)
    }

    /// Who a case's notice goes to: for `opened`, the managers and agents of its unit; for
    /// `escalated`, the managers of the nearest unit above it that has some. With no unit (or
    /// nobody found), the admins. One statement in the common case.
    pub async fn case_notice_recipients(
        &self,
        unit_id: Option<&str>,
        escalated: bool,
    ) -> Result<Vec<String>, StorageError> {
        let found: Vec<(String, i64)> = match unit_id {
            None => Vec::new(),
            Some(unit) => on_pool!(self, |pool| {
                sqlx::query_as(
                    "WITH RECURSIVE up(id, parent_id, depth) AS ( \
                       SELECT id, parent_id, CAST(0 AS BIGINT) FROM units WHERE id = $1 \
                       UNION ALL SELECT u.id, u.parent_id, up.depth + 1 FROM units u JOIN up ON u.id = up.parent_id) \
                     SELECT us.email, up.depth FROM up JOIN users us ON us.unit_id = up.id \
                     WHERE us.disabled_at IS NULL AND ( \
                       ($2 AND up.depth > 0 AND us.role = 'manager') \
                       OR (NOT $2 AND up.depth = 0 AND us.role IN ('manager', 'agent'))) \
                     ORDER BY up.depth, us.email",
                )
                .bind(unit)
                .bind(escalated)
                .fetch_all(pool)
                .await
            })?,
        };
        if let Some((_, nearest)) = found.first() {
            let nearest = *nearest;
            return Ok(found
                .into_iter()
                .filter(|(_, depth)| *depth == nearest)
                .map(|(email, _)| email)
                .collect());
        }
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT email FROM users WHERE role = 'admin' AND disabled_at IS NULL ORDER BY email",
            )
            .fetch_all(pool)
            .await
        })?)
    }
}

impl WriteSet {
    /// A text of `case`'s thread, from the channel and number the customer talks to; returns
    /// its id. `unprompted`: hearback's own (counted by the per-number daily cap).
    fn case_text(
        &mut self,
        case: &CaseRecord,
        body: &str,
        send_max_attempts: u32,
        timing: Timing,
        unprompted: bool,
    ) -> String {
        let id = self.outgoing(
            None,
            &case.contact_id,
            (&case.channel, &case.sender),
            Purpose::Case,
            body,
            send_max_attempts,
            timing,
        );
        let row = self.outgoing.last_mut().expect("pushed above");
        row.case_id = Some(case.id.clone());
        row.unprompted = unprompted;
        id
    }
}
