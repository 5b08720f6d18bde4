//! The development channel: nothing is signed, and bodies use the generic gateway's JSON
//! (see [`super::http`]): inbound `{"from": "+33…", "to": "…", "text": "…", "id": "…"}`,
//! statuses `{"id": "…", "status": "delivered"}`. Never expose a console channel to the internet.
//!
//! Sending sends nothing and makes no call: it answers at once with a fresh id
//! (`console-<UUIDv7>`), the segment count hearback computes for the text, and no cost. The caller
//! keeps the message for `GET /api/v1/console/messages`.

use super::{
    InboundMessage, OutboundSms, ParseError, Provider, SendError, Sent, StatusUpdate, VerifyError,
    WebhookRequest,
};
use crate::time::Timestamp;
use futures::future::BoxFuture;

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

    fn send<'a>(
        &'a self,
        _client: &'a reqwest::Client,
        sms: OutboundSms<'a>,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        let sent = Sent {
            provider_message_id: format!("console-{}", uuid::Uuid::now_v7()),
            segments: Some(crate::sms::segments(sms.text).segments),
            cost: None,
        };
        Box::pin(std::future::ready(Ok(sent)))
    }
}
