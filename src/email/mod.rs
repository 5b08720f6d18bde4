//! E-mail: cases' notices through SMTP (lettre), each with a text and an HTML part rendered from
//! the templates in `templates/email/` (minijinja; the HTML part escapes what it shows).

use crate::config::EmailConfig;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use std::time::Duration;

const CASE_TEXT: &str = include_str!("../../templates/email/case_opened.txt");
const CASE_HTML: &str = include_str!("../../templates/email/case_opened.html");

/// An e-mail ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What a case's notice shows.
#[derive(Debug, Clone, Serialize)]
pub struct CaseNotice {
    pub case: crate::storage::CaseRecord,
    /// The unit's code, or "the organisation".
    pub unit: String,
    pub reasons: Vec<String>,
    pub answers: Vec<NoticeAnswer>,
    pub escalated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoticeAnswer {
    pub question: String,
    pub value: String,
    pub text: Option<String>,
}

/// Why an e-mail was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The server may take it later (a connection refused, a 4xx).
    #[error("the SMTP server did not take the e-mail, for now: {0}")]
    Transient(String),
    /// It will be refused the same way every time (a 5xx, an invalid address).
    #[error("the e-mail was refused: {0}")]
    Permanent(String),
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    templates: minijinja::Environment<'static>,
    public_url: Option<url::Url>,
}

impl Mailer {
    /// The mailer `[email]` describes, or `None` when no SMTP server is configured. The
    /// configuration was validated at load; an error here names what is wrong all the same.
    pub fn new(config: &EmailConfig) -> Result<Option<Mailer>, String> {
        let Some(url) = &config.smtp_url else {
            return Ok(None);
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| format!("email.smtp_url: {e}"))?;
        builder = builder.timeout(Some(Duration::from_secs(config.timeout_secs.unwrap_or(30))));
        let from = config
            .from
            .as_deref()
            .ok_or("email.from is required with email.smtp_url")?
            .parse::<Mailbox>()
            .map_err(|e| format!("email.from: {e}"))?;
        let mut templates = minijinja::Environment::new();
        templates
            .add_template("case.txt", CASE_TEXT)
            .and_then(|()| templates.add_template("case.html", CASE_HTML))
            .map_err(|e| format!("an e-mail template does not parse: {e}"))?;
        Ok(Some(Mailer {
            transport: builder.build(),
            from,
            templates,
            public_url: config.public_url.clone(),
        }))
    }

    /// A case's notice, rendered.
    pub fn render_case_notice(&self, notice: &CaseNotice) -> Result<Rendered, String> {
        let link = match &self.public_url {
            Some(base) => base
                .join(&format!("api/v1/cases/{}", notice.case.id))
                .map_or_else(|_| notice.case.id.clone(), |u| u.to_string()),
            None => format!("case {}", notice.case.id),
        };
        let context = minijinja::context! {
            case => minijinja::Value::from(minijinja::value::Serde(&notice.case)),
            unit => &notice.unit,
            reasons => &notice.reasons,
            answers => minijinja::Value::from(minijinja::value::Serde(&notice.answers)),
            escalated => notice.escalated,
            link => link,
        };
        let render = |name: &str| {
            self.templates
                .get_template(name)
                .and_then(|t| t.render(&context))
                .map_err(|e| format!("template {name}: {e}"))
        };
        let subject = format!(
            "[hearback] {}{} case, {}: {}",
            if notice.escalated { "Escalated: " } else { "" },
            notice.case.priority,
            notice.unit,
            notice.case.rule_id
        );
        Ok(Rendered {
            subject,
            text: render("case.txt")?,
            html: render("case.html")?,
        })
    }

    /// Sends the e-mail to every address of `to` it can, and returns those refused, each with
    /// why. One SMTP transaction first; when the server refuses it for good (one recipient's
    /// mailbox gone is enough), one transaction per address, so that a bad address does not
    /// keep the e-mail from the others. An error only when no address took it, or when the
    /// server failed for now (then a retry may send it again to addresses that had it).
    pub async fn send(&self, to: &[String], rendered: &Rendered) -> Result<Vec<String>, MailError> {
        let mut refused = Vec::new();
        let mut mailboxes = Vec::new();
        for address in to {
            match address.parse::<Mailbox>() {
                Ok(mailbox) => mailboxes.push(mailbox),
                Err(e) => refused.push(format!("{address}: not an e-mail address ({e})")),
            }
        }
        let together = match mailboxes.as_slice() {
            [] => Err(MailError::Permanent(String::new())),
            all => self.send_to(all, rendered).await,
        };
        match together {
            Ok(()) => return Ok(refused),
            Err(MailError::Permanent(_)) if mailboxes.len() > 1 => {}
            Err(MailError::Permanent(e)) => {
                refused.extend(mailboxes.iter().map(|m| format!("{m}: {e}")));
                return Err(MailError::Permanent(refused.join("; ")));
            }
            Err(transient) => return Err(transient),
        }
        let mut taken = 0;
        for mailbox in &mailboxes {
            match self.send_to(std::slice::from_ref(mailbox), rendered).await {
                Ok(()) => taken += 1,
                Err(MailError::Permanent(e)) => refused.push(format!("{mailbox}: {e}")),
                Err(transient) => return Err(transient),
            }
        }
        if taken == 0 {
            return Err(MailError::Permanent(refused.join("; ")));
        }
        Ok(refused)
    }

    /// One e-mail, one SMTP transaction, to every mailbox of `to`.
    async fn send_to(&self, to: &[Mailbox], rendered: &Rendered) -> Result<(), MailError> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(&rendered.subject);
        for mailbox in to {
            message = message.to(mailbox.clone());
        }
        let message = message
            .multipart(MultiPart::alternative_plain_html(
                rendered.text.clone(),
                rendered.html.clone(),
            ))
            .map_err(|e| MailError::Permanent(e.to_string()))?;
        self.transport.send(message).await.map(drop).map_err(|e| {
            if e.is_permanent() {
                MailError::Permanent(e.to_string())
            } else {
                MailError::Transient(e.to_string())
            }
        })
    }
}
