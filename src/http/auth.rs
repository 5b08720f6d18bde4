//! `Authorization: Bearer <api key>` for every `/api/v1` route.

use super::{ApiError, AppState};
use crate::auth::api_key::ApiKeyToken;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

/// Who is calling, for handlers and the audit log.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub key_name: String,
}

pub async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing Authorization header; send `Authorization: Bearer <api key>`",
            )
        })?;
    let token = presented
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|key| ApiKeyToken::parse(key.trim()).ok())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "malformed Authorization header; send `Authorization: Bearer <api key>`",
            )
        })?;
    let credential = state.storage.api_key_credential(token.id()).await?;
    // One answer for unknown, wrong and revoked keys: the caller learns nothing about which ids exist.
    let credential = credential
        .filter(|c| c.revoked_at.is_none() && token.matches(&c.secret_hash))
        .ok_or_else(|| ApiError::unauthorized("invalid or revoked API key"))?;
    request.extensions_mut().insert(Caller {
        key_id: credential.id,
        key_name: credential.name,
    });
    Ok(next.run(request).await)
}
