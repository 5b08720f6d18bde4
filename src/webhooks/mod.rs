//! Webhooks to the company's CRM, the pure part: how a request is signed (Standard Webhooks),
//! which addresses an endpoint may reach, and when a failed delivery is tried again.
//!
//! The I/O lives elsewhere: the deliveries and their order in `storage::webhooks`, the requests
//! in `jobs::webhooks`, the routes in `http::api::webhooks`.

pub mod address;
pub mod retry;
pub mod signature;

#[cfg(test)]
mod tests;

pub use address::{AddressPolicy, GuardedResolver};
pub use retry::{RetrySchedule, retry_after};
pub use signature::{SecretError, SigningSecret};

/// Every event type of the public contract (DESIGN.md, "Outbound events"); an endpoint subscribes
/// to some of them, or to all with an empty list.
pub const EVENT_TYPES: [&str; 15] = [
    "invitation.sent",
    "invitation.failed",
    "response.answered",
    "response.completed",
    "response.expired",
    "alert.raised",
    "case.opened",
    "case.assigned",
    "case.message",
    "case.escalated",
    "case.resolved",
    "case.closed",
    "contact.opted_out",
    "contact.opted_in",
    "contact.erased",
];

/// Whether an endpoint subscribed to `types` wants `event_type` (no types: every event).
pub fn subscribes(types: &[String], event_type: &str) -> bool {
    types.is_empty() || types.iter().any(|t| t == event_type)
}

/// An endpoint's URL as hearback shows it (listings, logs): its user and password and the
/// query's values, where CRMs put their tokens, masked. One that does not parse is not shown at
/// all. A token in the path (`/hooks/catch/123/abc`) stays: the path is how one tells endpoints
/// apart.
pub fn shown_url(url: &str) -> String {
    const MASK: &str = "***";
    let Ok(mut shown) = url::Url::parse(url) else {
        return MASK.into();
    };
    // Cannot fail: a URL with a user or a password has a host.
    if shown.password().is_some() {
        let _ = shown.set_password(Some(MASK));
    }
    if !shown.username().is_empty() {
        let _ = shown.set_username(MASK);
    }
    if shown.query().is_some() {
        let keys: Vec<String> = shown
            .query_pairs()
            .map(|(key, _)| key.into_owned())
            .collect();
        shown
            .query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|key| (key.as_str(), MASK)));
    }
    shown.to_string()
}

/// The names in `types` that are not event types of the contract.
pub fn unknown_event_types(types: &[String]) -> Vec<&str> {
    types
        .iter()
        .map(String::as_str)
        .filter(|t| !EVENT_TYPES.contains(t))
        .collect()
}
