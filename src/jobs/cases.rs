//! The jobs of cases: e-mailing a case's notice (`case.notice`), escalating a case nobody took
//! in time (`case.sla`), closing a resolved case whose recovery question went unanswered
//! (`case.close`). Each reads the case as it is when it runs: a case taken meanwhile is not
//! escalated, one closed meanwhile is left alone.

use super::{JobFailure, JobFuture, JobHandler};
use crate::email::{CaseNotice, MailError, Mailer, NoticeAnswer};
use crate::storage::{
    CASE_CLOSE_JOB, CASE_NOTICE_JOB, CASE_SLA_JOB, CaseScope, ClaimedJob, Storage, StorageError,
};
use crate::time::Clock;
use std::sync::Arc;

fn case_id(job: &ClaimedJob) -> Result<String, JobFailure> {
    job.payload
        .get("case_id")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| JobFailure::Permanent("the payload has no case_id".into()))
}

fn retry(error: StorageError) -> JobFailure {
    JobFailure::Retry(error.to_string())
}

/// E-mails a case's notice to the people it concerns.
pub struct SendCaseNotice {
    pub storage: Storage,
    pub mailer: Arc<Mailer>,
}

impl JobHandler for SendCaseNotice {
    fn kind(&self) -> &'static str {
        CASE_NOTICE_JOB
    }

    fn run(&self, job: ClaimedJob) -> JobFuture {
        let (storage, mailer) = (self.storage.clone(), Arc::clone(&self.mailer));
        Box::pin(async move {
            let id = case_id(&job)?;
            let notice = job.payload.get("notice").and_then(|v| v.as_str());
            let escalated = notice == Some("escalated");
            // A rule joining a case tells only the addresses it names: the unit's people were
            // told when the case opened.
            let unit_people = notice != Some("alert");
            let extra: Vec<String> = job
                .payload
                .get("notify")
                .and_then(|v| v.as_array())
                .map(|list| {
                    list.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let Some(case) = storage.case(&id, &CaseScope::All).await.map_err(retry)? else {
                return Err(JobFailure::Permanent(format!("no case {id}")));
            };
            let mut to = if unit_people {
                storage
                    .case_notice_recipients(case.unit_id.as_deref(), escalated)
                    .await
                    .map_err(retry)?
            } else {
                Vec::new()
            };
            to.extend(extra);
            to.sort();
            to.dedup();
            if to.is_empty() {
                // The case and its events stand; nobody is named to be told by e-mail.
                tracing::warn!(case = %id, "no user to notify about this case: add managers or agents to its unit, or an admin");
                return Ok(());
            }
            // The alert's reasons travel with the notice; an escalation repeats the history's.
            let reasons: Vec<String> = match job.payload.get("reasons").and_then(|r| r.as_array()) {
                Some(reasons) => reasons
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect(),
                None => storage
                    .case_history(&id)
                    .await
                    .map_err(retry)?
                    .0
                    .iter()
                    .filter(|e| matches!(e.kind.as_str(), "opened" | "alert"))
                    .flat_map(|e| {
                        e.details
                            .0
                            .get("reasons")
                            .and_then(|r| r.as_array())
                            .cloned()
                            .unwrap_or_default()
                    })
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect(),
            };
            let answers = match &case.conversation_id {
                Some(conversation) => storage
                    .conversation_answers(conversation)
                    .await
                    .map_err(retry)?
                    .into_iter()
                    .map(|a| NoticeAnswer {
                        question: a.question_id,
                        value: a
                            .score
                            .map(|s| s.to_string())
                            .or(a.choice)
                            .unwrap_or_default(),
                        text: a.text,
                    })
                    .collect(),
                None => Vec::new(),
            };
            let notice = CaseNotice {
                unit: case
                    .unit_code
                    .clone()
                    .unwrap_or_else(|| "the organisation".into()),
                case,
                reasons,
                answers,
                escalated,
            };
            let rendered = mailer
                .render_case_notice(&notice)
                .map_err(JobFailure::Permanent)?;
            let refused = mailer.send(&to, &rendered).await.map_err(|e| match e {
                MailError::Transient(m) => JobFailure::Retry(m),
                MailError::Permanent(m) => JobFailure::Permanent(m),
            })?;
            for why in &refused {
                tracing::warn!(case = %id, refused = %why, "a case notice's recipient was refused; the others have it");
            }
            tracing::info!(case = %id, recipients = to.len(), escalated, "case notice e-mailed");
            Ok(())
        })
    }
}

/// Escalates a case still open when its SLA is up.
pub struct EscalateCase {
    pub storage: Storage,
    /// Whether escalations are e-mailed (SMTP is configured).
    pub email: bool,
    pub clock: Clock,
}

impl JobHandler for EscalateCase {
    fn kind(&self) -> &'static str {
        CASE_SLA_JOB
    }

    fn run(&self, job: ClaimedJob) -> JobFuture {
        let (storage, email, clock) = (self.storage.clone(), self.email, self.clock.clone());
        Box::pin(async move {
            let id = case_id(&job)?;
            if storage
                .escalate_case(&id, email, clock.now())
                .await
                .map_err(retry)?
            {
                tracing::info!(case = %id, "case escalated: not taken within its SLA");
            }
            Ok(())
        })
    }
}

/// Closes a resolved case whose recovery question was not answered in time.
pub struct CloseResolvedCase {
    pub storage: Storage,
    pub clock: Clock,
}

impl JobHandler for CloseResolvedCase {
    fn kind(&self) -> &'static str {
        CASE_CLOSE_JOB
    }

    fn run(&self, job: ClaimedJob) -> JobFuture {
        let (storage, clock) = (self.storage.clone(), self.clock.clone());
        Box::pin(async move {
            let id = case_id(&job)?;
            storage
                .close_resolved_case(&id, clock.now())
                .await
                .map_err(retry)?;
            Ok(())
        })
    }
}
