//! Invitations in: one event, or a batch of them (an import's chunk), recorded in one
//! transaction with a fixed number of statements per batch however many invitations it holds:
//! each with its conversation, first question and jobs when its first question is due now, with
//! the job that opens it when it is due later (storage::opening).
//!
//! A batch reads what it needs once — the events seen before, the contacts (created as needed,
//! and locked, in phone order), their open conversations, their recent surveys, the quotas'
//! counts — then decides each invitation in order in memory, each seeing what the ones before it
//! accepted, and writes each table with multi-row statements. A batch of one is the API's path:
//! there is one code path.
//!
//! On PostgreSQL its statements are not kept prepared (`persistent(false)`, see
//! [`super::BatchPlans`]): PostgreSQL plans each with the tables' current size. A prepared
//! statement falls back to a generic plan made when the tables were small — a sequential scan —
//! and an import into an empty database slowed from 2 000 to 600 rows/s within 60 000 rows as
//! each batch scanned every invitation written before it.

use super::bulk::{BulkWrite, ContactRow, InvitationRow};
use super::contacts::block_new_contacts;
use super::conversations::INVITATION_COLUMNS;
use super::imports::write_import_chunk;
use super::opening::{contacts_in_case, open_conversations_of};
use super::{
    BeginWrite, ConversationView, ImportChunk, InvitationOutcome, InvitationRecord, OPEN_JOB,
    OpenPlan, OpeningTimes, Storage, StorageError, WriteSet, fetch_by_ids, flush_writes, on_pool,
    push_list,
};
use crate::phone::Phone;
use crate::storage::Advance;
use crate::time::Timestamp;
use serde_json::Value;
use sqlx::types::Json;
use std::collections::{HashMap, HashSet};

/// Invitations per transaction: each table's rows then go in one statement, under SQLite's
/// limit of 32 766 bound values (an invitation writes up to three jobs of nine values).
pub const MAX_INVITATIONS_PER_BATCH: usize = 1_000;

/// How long past its send time a scheduled invitation still holds its customer's channel before
/// it is opened: a backlog or an instance down delays an opening by minutes or hours; past a day,
/// its opening job has died.
const STALE_OPENING: std::time::Duration = std::time::Duration::from_secs(86_400);

/// An invitation to record; `opening` is the engine's first step, computed by intake.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    /// The integration that sent it (its API key id, or an import's source): event ids are
    /// unique per source.
    pub source: String,
    pub event_id: String,
    /// SHA-256 of the request as received: the same event id with another payload is a conflict.
    pub payload_hash: [u8; 32],
    pub flow_id: String,
    pub phone: Phone,
    /// The number's country (ISO 3166), for the reminder's window.
    pub country: Option<String>,
    pub locale: Option<String>,
    pub unit_id: Option<String>,
    pub variables: Value,
    pub channel: String,
    pub sender: String,
    /// The engine's first step when the first question is due now: the conversation opens with
    /// the invitation. `None` when it is due later: its opening job opens it then.
    pub opening: Option<Advance>,
    pub send_max_attempts: u32,
    /// When the first question goes out (its send job is due then).
    pub send_at: Timestamp,
    /// When the conversation closes if it is still open (the flow's `expire_after`).
    pub expires_at: Timestamp,
    /// When a customer who has not answered is reminded (the flow's `reminder`), if ever.
    pub remind_at: Option<Timestamp>,
    /// The frequency cap, `[from, until)`: declined when the contact has a survey (scheduled or
    /// sent, any flow) due within it. `None`: no cap.
    pub surveyed_within: Option<(Timestamp, Timestamp)>,
    /// The flow's response quota for the invitation's unit, if it has one.
    pub quota: Option<QuotaCheck>,
    pub now: Timestamp,
}

/// A response quota: declined once the unit (or, without a unit, the invitations without one)
/// has this many responses to the flow since the period began. A response is a conversation
/// with an answer given in the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaCheck {
    pub responses: u32,
    pub since: Timestamp,
}

/// The request hash an erased customer's invitations keep: none. Such an invitation has
/// forgotten its request, so any resend of its event is taken as it.
pub(crate) const ERASED_PAYLOAD_HASH: &[u8] = &[];

/// Whether a request is the one an invitation recorded (see [`ERASED_PAYLOAD_HASH`]).
fn same_request(recorded: &[u8], new: &[u8; 32]) -> bool {
    recorded == ERASED_PAYLOAD_HASH || recorded == new.as_slice()
}

/// An invitation already recorded for an event of the batch.
#[derive(sqlx::FromRow)]
struct SeenInvitation {
    payload_hash: Vec<u8>,
    #[sqlx(flatten)]
    record: InvitationRecord,
}

/// What the batch decided for one invitation.
enum Decision {
    /// Recorded now (accepted, or declined with a reason).
    New {
        id: String,
        contact_id: String,
        declined: Option<&'static str>,
        /// The conversation it started, once written.
        conversation_id: Option<String>,
    },
    /// The same event again: the invitation it made (recorded before, or earlier in the batch).
    Existing(InvitationRecord),
    /// The same event earlier in this batch, same payload: whatever that one became.
    SameAs(usize),
    /// Recorded by a concurrent request between this batch's read and its write: read back.
    RecordedMeanwhile,
    Conflict,
}

const SAME_EVENT_OTHER_PAYLOAD: StorageError =
    StorageError::Conflict("an invitation with this event_id and a different payload exists");

impl Storage {
    /// Records one invitation; its conversation starts, and its first question is queued, at
    /// once when it is due now, else when its opening job runs at its send time
    /// (storage::opening). Idempotent on (source, event id); declined, and kept as such, for an
    /// opted-out number, a customer with a case that is not closed, one that already has an open
    /// conversation (or a survey to open) on this channel, one surveyed within the frequency cap,
    /// or a unit and flow whose quota is reached.
    pub async fn start_invitation(
        &self,
        new: &NewInvitation,
    ) -> Result<InvitationOutcome, StorageError> {
        self.start_invitations(std::slice::from_ref(new))
            .await?
            .remove(0)
    }

    /// [`Storage::start_invitation`] for a batch, in order: an invitation sees what the ones
    /// before it accepted (a second survey for the same number in the batch meets the first's
    /// open conversation or frequency cap). One transaction per [`MAX_INVITATIONS_PER_BATCH`];
    /// one outcome per invitation; the call fails only when a transaction does.
    pub async fn start_invitations(
        &self,
        batch: &[NewInvitation],
    ) -> Result<Vec<Result<InvitationOutcome, StorageError>>, StorageError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for part in batch.chunks(MAX_INVITATIONS_PER_BATCH) {
            outcomes.extend(
                self.start_invitation_batch(part, |outcomes| Ok((None, outcomes)))
                    .await?,
            );
        }
        Ok(outcomes)
    }

    /// [`Storage::start_invitations`] for an import's batch (at most
    /// [`MAX_INVITATIONS_PER_BATCH`]), with its report: `report` makes the batch's
    /// [`ImportChunk`] from the invitations' outcomes, and the chunk is written to import
    /// `import_id` in the invitations' transaction, so that the import's counts and rejections
    /// are always those of the invitations written. Returns what `report` gives beside the chunk.
    pub async fn import_invitations<T>(
        &self,
        import_id: &str,
        batch: &[NewInvitation],
        report: impl FnOnce(
            Vec<Result<InvitationOutcome, StorageError>>,
        ) -> Result<(ImportChunk, T), StorageError>,
    ) -> Result<T, StorageError> {
        assert!(
            batch.len() <= MAX_INVITATIONS_PER_BATCH,
            "an import's batch is one transaction"
        );
        self.start_invitation_batch(batch, |outcomes| {
            let (chunk, given) = report(outcomes)?;
            Ok((Some((import_id, chunk)), given))
        })
        .await
    }

    /// One transaction: the batch's invitations, then `finish` with their outcomes, then the
    /// chunk it gives, if any, to its import.
    async fn start_invitation_batch<'i, T>(
        &self,
        batch: &[NewInvitation],
        finish: impl FnOnce(
            Vec<Result<InvitationOutcome, StorageError>>,
        ) -> Result<(Option<(&'i str, ImportChunk)>, T), StorageError>,
    ) -> Result<T, StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let kept = super::kept(&tx);

            // Events seen before, per source (an import has one): an index lookup each.
            let mut seen: HashMap<(&str, &str), SeenInvitation> = HashMap::new();
            let mut sources: Vec<&str> = batch.iter().map(|n| n.source.as_str()).collect();
            sources.sort_unstable();
            sources.dedup();
            for source in sources {
                let events: HashSet<&str> = batch
                    .iter()
                    .filter(|n| n.source == source)
                    .map(|n| n.event_id.as_str())
                    .collect();
                let mut select = sqlx::QueryBuilder::new(format!(
                    "SELECT i.payload_hash, {INVITATION_COLUMNS} FROM invitations i WHERE i.source = "
                ));
                select.push_bind(source).push(" AND i.event_id");
                let listed: Vec<&str> = events.iter().copied().collect();
                push_list(&tx, &mut select, &listed);
                let rows: Vec<SeenInvitation> = select
                    .build_query_as()
                    .persistent(kept)
                    .fetch_all(&mut *tx)
                    .await?;
                for row in rows {
                    let event = events
                        .get(row.record.event_id.as_str())
                        .expect("a row found is one asked for");
                    seen.insert((source, event), row);
                }
            }

            // The contacts of the new events, created as needed, each once and in phone order:
            // the upsert locks their rows on PostgreSQL, so a customer's messages and invitations
            // apply one after the other, and two batches cannot deadlock.
            // Each with the id it gets if it is new: a contact read back with another id existed
            // before this batch.
            let mut numbers: Vec<(&str, Option<&str>, Timestamp, String)> = batch
                .iter()
                .filter(|n| !seen.contains_key(&(n.source.as_str(), n.event_id.as_str())))
                .map(|n| {
                    let id = uuid::Uuid::now_v7().to_string();
                    (n.phone.as_e164(), n.locale.as_deref(), n.now, id)
                })
                .collect();
            numbers.sort_by_key(|(phone, ..)| *phone);
            numbers.dedup_by_key(|(phone, ..)| *phone);
            let mut contacts: HashMap<String, (String, bool)> =
                HashMap::with_capacity(numbers.len());
            // Contacts that existed before this batch: only they can have cases, conversations
            // or invitations to look up (an import of new customers looks up nothing).
            let mut known: Vec<String> = Vec::new();
            if !numbers.is_empty() {
                let rows: Vec<ContactRow<'_>> = numbers
                    .iter()
                    .map(|(phone, locale, at, id)| (id.as_str(), *phone, *locale, *at))
                    .collect();
                tx.upsert_contacts(&rows).await?;
                // Read back only the contacts that were there before (the upsert kept their id,
                // not the one given here): none for an import of new customers. Returning every
                // row from the upsert instead cost a row handed from SQLite's thread per
                // contact (docs/PERFORMANCE.md).
                let mut select = sqlx::QueryBuilder::new(
                    "SELECT id, phone, opted_out_at FROM contacts WHERE phone",
                );
                let phones: Vec<&str> = numbers.iter().map(|(phone, ..)| *phone).collect();
                push_list(&tx, &mut select, &phones);
                select.push(" AND NOT id");
                let given: Vec<&str> = numbers.iter().map(|(.., id)| id.as_str()).collect();
                push_list(&tx, &mut select, &given);
                let existing: Vec<(String, String, Option<Timestamp>)> = select
                    .build_query_as()
                    .persistent(kept)
                    .fetch_all(&mut *tx)
                    .await?;
                for (id, phone, opted_out_at) in existing {
                    known.push(id.clone());
                    contacts.insert(phone, (id, opted_out_at.is_some()));
                }
                // A number erased after it opted out starts opted out again.
                let created: Vec<(String, String, Timestamp, Timestamp)> = numbers
                    .iter()
                    .filter(|(phone, ..)| !contacts.contains_key(*phone))
                    .map(|(phone, _, at, id)| (id.clone(), phone.to_string(), *at, *at))
                    .collect();
                let blocked = block_new_contacts!(tx, self, &created);
                for (id, phone, ..) in created {
                    let opted_out = blocked.contains(&id);
                    contacts.insert(phone, (id, opted_out));
                }
            }
            let known_ids: Vec<&str> = known.iter().map(String::as_str).collect();

            // Their cases that are not closed: a customer in a case is not surveyed meanwhile.
            let in_case = contacts_in_case!(tx, &known_ids);

            // Their open conversations, and their invitations: a survey scheduled and not opened
            // yet holds its channel as an open conversation would (storage::opening), and the
            // frequency cap counts every survey scheduled or sent.
            let mut open = open_conversations_of!(tx, &known_ids);
            let mut scheduled: HashSet<(String, String)> = HashSet::new();
            let mut surveys: HashMap<String, Vec<Timestamp>> = HashMap::new();
            // Every invitation of these contacts, filtered here: a contact has few, and a
            // condition on the status or the date would lead the planner to walk every scheduled
            // invitation (a million-row import slowed to 1 300 rows/s).
            let rows: Vec<(String, String, Option<String>, Timestamp)> = fetch_by_ids!(
                tx,
                "SELECT contact_id, status, channel, COALESCE(send_at, created_at) FROM invitations \
                 WHERE contact_id",
                &known_ids,
                ""
            );
            // A scheduled invitation whose time is long past and still not opened lost its
            // opening job (dead after its attempts): it no longer holds the channel. One that
            // opened is in `open` above while its conversation is.
            let holds_since = batch.first().map_or(Timestamp::now(), |n| n.now) - STALE_OPENING;
            for (contact, status, channel, at) in rows {
                if matches!(status.as_str(), "scheduled" | "held" | "sent") {
                    if status == "scheduled" && at >= holds_since {
                        scheduled.insert((contact.clone(), channel.unwrap_or_default()));
                    }
                    surveys.entry(contact).or_default().push(at);
                }
            }

            // Each quota's count, once per unit and flow: invitations do not change it.
            let mut quota_used: HashMap<(Option<&str>, &str, Timestamp), i64> = HashMap::new();
            for new in batch {
                let Some(quota) = new.quota else { continue };
                let key = (new.unit_id.as_deref(), new.flow_id.as_str(), quota.since);
                if quota_used.contains_key(&key) {
                    continue;
                }
                let unit_condition = if new.unit_id.is_some() {
                    "unit_id = $2"
                } else {
                    "unit_id IS NULL AND $2 IS NULL"
                };
                // One range of `conversations_responses`, read no further than the quota.
                let count: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM conversations \
                     WHERE flow_id = $1 AND {unit_condition} AND first_answered_at >= $3 LIMIT $4) AS responses"
                ))
                .bind(&new.flow_id)
                .bind(new.unit_id.as_deref())
                .bind(quota.since)
                .bind(i64::from(quota.responses))
                .persistent(kept)
                .fetch_one(&mut *tx)
                .await?;
                quota_used.insert(key, count);
            }

            // Each invitation in order, seeing what the ones before it accepted.
            let mut decisions = Vec::with_capacity(batch.len());
            let mut first_of_event: HashMap<(&str, &str), usize> = HashMap::new();
            for (index, new) in batch.iter().enumerate() {
                let event = (new.source.as_str(), new.event_id.as_str());
                if let Some(row) = seen.get(&event) {
                    decisions.push(if same_request(&row.payload_hash, &new.payload_hash) {
                        Decision::Existing(row.record.clone())
                    } else {
                        Decision::Conflict
                    });
                    continue;
                }
                if let Some(&first) = first_of_event.get(&event) {
                    decisions.push(if batch[first].payload_hash == new.payload_hash {
                        Decision::SameAs(first)
                    } else {
                        Decision::Conflict
                    });
                    continue;
                }
                first_of_event.insert(event, index);
                let (contact_id, opted_out) = contacts
                    .get(new.phone.as_e164())
                    .cloned()
                    .expect("every new event's contact was upserted");
                let conversation_key =
                    (contact_id.clone(), new.channel.clone(), new.sender.clone());
                let recent = new.surveyed_within.is_some_and(|(from, until)| {
                    surveys
                        .get(&contact_id)
                        .is_some_and(|due| due.iter().any(|at| *at >= from && *at < until))
                });
                let quota_reached = new.quota.is_some_and(|quota| {
                    let key = (new.unit_id.as_deref(), new.flow_id.as_str(), quota.since);
                    quota_used[&key] >= i64::from(quota.responses)
                });
                let declined = if opted_out {
                    Some("opted_out")
                } else if in_case.contains(&contact_id) {
                    Some("open_case")
                } else if open.contains(&conversation_key)
                    || scheduled.contains(&(contact_id.clone(), new.channel.clone()))
                {
                    Some("open_conversation")
                } else if recent {
                    Some("frequency_cap")
                } else if quota_reached {
                    Some("quota_reached")
                } else {
                    None
                };
                if declined.is_none() {
                    open.insert(conversation_key);
                    scheduled.insert((contact_id.clone(), new.channel.clone()));
                    surveys
                        .entry(contact_id.clone())
                        .or_default()
                        .push(new.send_at);
                }
                decisions.push(Decision::New {
                    id: uuid::Uuid::now_v7().to_string(),
                    contact_id,
                    declined,
                    conversation_id: None,
                });
            }

            // The new invitations; one that a concurrent request recorded meanwhile is not
            // written again, and is answered as that request's, read in this transaction below
            // (a failure to read it fails the whole batch).
            let fresh: Vec<InvitationRow<'_>> = batch
                .iter()
                .zip(&decisions)
                .filter_map(|(new, decision)| match decision {
                    Decision::New {
                        id,
                        contact_id,
                        declined,
                        ..
                    } => Some(InvitationRow {
                        new,
                        id,
                        contact_id,
                        declined: *declined,
                    }),
                    _ => None,
                })
                .collect();
            let mut not_written: HashSet<String> = HashSet::new();
            let written = tx.insert_invitations(&fresh).await?;
            // All of them, but for an event a concurrent request recorded: then read which.
            if written != fresh.len() as u64 {
                let ids: Vec<&str> = fresh.iter().map(|row| row.id).collect();
                let rows: Vec<(String,)> =
                    fetch_by_ids!(tx, "SELECT id FROM invitations WHERE id", &ids, "");
                let written: HashSet<String> = rows.into_iter().map(|(id,)| id).collect();
                not_written.extend(
                    ids.iter()
                        .filter(|id| !written.contains(**id))
                        .map(|id| id.to_string()),
                );
            }

            // The accepted ones: opened now when their first question is due now, otherwise
            // left to their opening job (storage::opening).
            let mut writes = WriteSet::default();
            for (new, decision) in batch.iter().zip(decisions.iter_mut()) {
                let Decision::New {
                    id,
                    contact_id,
                    declined,
                    conversation_id: started,
                } = decision
                else {
                    continue;
                };
                if not_written.contains(id.as_str()) {
                    *decision = Decision::RecordedMeanwhile;
                    continue;
                }
                if declined.is_some() {
                    continue;
                }
                let times = OpeningTimes {
                    send_at: new.send_at,
                    expires_at: new.expires_at,
                    remind_at: new.remind_at,
                };
                let Some(opening) = &new.opening else {
                    let plan = OpenPlan {
                        invitation_id: id.clone(),
                        sender: new.sender.clone(),
                        country: new.country.clone(),
                        send_at: new.send_at,
                        expires_at: new.expires_at,
                        remind_at: new.remind_at,
                    };
                    writes.job(
                        OPEN_JOB,
                        id,
                        serde_json::to_value(&plan).expect("a plan serialises"),
                        new.send_at,
                        new.send_max_attempts,
                        new.now,
                    );
                    continue;
                };
                let conversation_id = uuid::Uuid::now_v7().to_string();
                let view = ConversationView {
                    id: conversation_id.clone(),
                    invitation_id: id.clone(),
                    event_id: new.event_id.clone(),
                    flow_id: new.flow_id.clone(),
                    contact_id: contact_id.clone(),
                    channel: new.channel.clone(),
                    sender: new.sender.clone(),
                    state: Json(Value::Null),
                    version: 1,
                    unit_id: new.unit_id.clone(),
                };
                writes.open(
                    &view,
                    opening,
                    (times, new.country.as_deref()),
                    new.send_max_attempts,
                    new.now,
                );
                *started = Some(conversation_id);
            }
            flush_writes!(tx, &writes);

            let mut outcomes: Vec<Result<InvitationOutcome, StorageError>> =
                Vec::with_capacity(batch.len());
            for (new, decision) in batch.iter().zip(decisions) {
                let outcome = match decision {
                    Decision::New {
                        id,
                        declined,
                        conversation_id,
                        ..
                    } => Ok(InvitationOutcome::Created(InvitationRecord {
                        id,
                        event_id: new.event_id.clone(),
                        flow_id: new.flow_id.clone(),
                        channel: Some(new.channel.clone()),
                        status: if declined.is_some() {
                            "declined"
                        } else {
                            "scheduled"
                        }
                        .into(),
                        status_reason: declined.map(str::to_string),
                        send_at: declined.is_none().then_some(new.send_at),
                        created_at: new.now,
                        conversation_id,
                    })),
                    Decision::Existing(record) => Ok(InvitationOutcome::Existing(record)),
                    Decision::SameAs(first) => match &outcomes[first] {
                        Ok(
                            InvitationOutcome::Created(record)
                            | InvitationOutcome::Existing(record),
                        ) => Ok(InvitationOutcome::Existing(record.clone())),
                        Err(_) => Err(SAME_EVENT_OTHER_PAYLOAD),
                    },
                    // Committed by the other request before this batch's insert returned: this
                    // transaction reads it (PostgreSQL reads what is committed at each statement).
                    Decision::RecordedMeanwhile => {
                        let seen: SeenInvitation = sqlx::query_as(&format!(
                            "SELECT i.payload_hash, {INVITATION_COLUMNS} FROM invitations i \
                             WHERE i.source = $1 AND i.event_id = $2"
                        ))
                        .bind(&new.source)
                        .bind(&new.event_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        if same_request(&seen.payload_hash, &new.payload_hash) {
                            Ok(InvitationOutcome::Existing(seen.record))
                        } else {
                            Err(SAME_EVENT_OTHER_PAYLOAD)
                        }
                    }
                    Decision::Conflict => Err(SAME_EVENT_OTHER_PAYLOAD),
                };
                outcomes.push(outcome);
            }
            let (chunk, given) = finish(outcomes)?;
            if let Some((import_id, chunk)) = &chunk {
                write_import_chunk!(tx, import_id, chunk);
            }
            tx.commit().await?;
            Ok::<_, StorageError>(given)
        })
    }
}
