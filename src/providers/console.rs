//! The development channel: nothing is signed, and bodies use the generic gateway's JSON
//! (see [`super::http`]): inbound `{"from": "+33…", "to": "…", "text": "…", "id": "…"}`,
//! statuses `{"id": "…", "status": "delivered"}`. Never expose a console channel to the internet.

use super::{InboundMessage, ParseError, Provider, StatusUpdate, VerifyError, WebhookRequest};
use crate::time::Timestamp;

pub struct Console;

impl Provider for Console {
    fn name(&self) -> &'static str {
        "console"
    }

    fn verify(&self, _request: &WebhookRequest<'_>, _now: Timestamp) -> Result<(), VerifyError> {
        Ok(())
    }

    fn parse_inbound(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<InboundMessage>, ParseError> {
        super::http::parse_inbound(request.body)
    }

    fn parse_status(&self, request: &WebhookRequest<'_>) -> Result<Vec<StatusUpdate>, ParseError> {
        super::http::parse_status(request.body)
    }
}
