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
    /// The user the key acts for; `None` for an integration's key.
    pub user: Option<crate::storage::UserRecord>,
    /// The cases the caller sees and changes: all for an integration or an admin, else their
    /// unit's and its sub-units'.
    pub scope: crate::storage::CaseScope,
}

impl Caller {
    /// How the caller is named in a case's history.
    pub fn actor(&self) -> String {
        match &self.user {
            Some(user) => format!("user:{}", user.email),
            None => format!("api_key:{}", self.key_name),
        }
    }
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
    let (user, scope) = match &credential.user_id {
        None => (None, crate::storage::CaseScope::All),
        Some(user_id) => {
            // A disabled user's keys stop working with them.
            let user = state
                .storage
                .user(user_id)
                .await?
                .ok_or_else(|| ApiError::unauthorized("invalid or revoked API key"))?;
            let scope = match (user.role.as_str(), &user.unit_id) {
                ("admin", _) => crate::storage::CaseScope::All,
                (_, Some(unit)) => {
                    crate::storage::CaseScope::Units(state.storage.unit_subtree(unit).await?)
                }
                // The schema gives every non-admin a unit; without one, nothing is theirs.
                (_, None) => crate::storage::CaseScope::Units(Vec::new()),
            };
            (Some(user), scope)
        }
    };
    // A user's key acts with the user's unit scope; the routes that know scopes are the cases'
    // so far, so an agent's or a manager's key reaches those only (an admin's, everything).
    let unscoped_route = !request.uri().path().starts_with("/api/v1/cases");
    if unscoped_route && user.as_ref().is_some_and(|u| u.role != "admin") {
        return Err(ApiError::forbidden(
            "this key acts for a user of a unit: it reaches /api/v1/cases only",
        ));
    }
    let caller = Caller {
        key_id: credential.id,
        key_name: credential.name,
        user,
        scope,
    };
    let action = AuditedRequest::of(&request);
    let actor = caller.actor();
    request.extensions_mut().insert(caller);
    let response = next.run(request).await;
    let target = response.extensions().get::<AuditTarget>().cloned();
    action
        .record(&state.storage, actor, response.status(), target)
        .await;
    Ok(response)
}

/// The record a handler can leave on its response for the audit log: the id of what it read or
/// changed, when the path does not say it plainly (a phone number is personal data: the
/// contact's id goes to the log instead).
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// What an API request was, for the audit log: its route template (never the raw path) and the
/// record it names.
struct AuditedRequest {
    action: String,
    target_type: String,
    target_id: Option<String>,
}

impl AuditedRequest {
    fn of(request: &Request) -> AuditedRequest {
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("unmatched", |p| p.as_str())
            .to_string();
        let resource = route.trim_start_matches("/api/v1/");
        let target_type = resource.split('/').next().unwrap_or_default().to_string();
        // The path's segment where the template has a parameter, unless it is a phone number.
        let target_id = route
            .split('/')
            .zip(request.uri().path().split('/'))
            .find(|(template, _)| template.starts_with('{') && *template != "{phone}")
            .map(|(_, value)| value.to_string());
        AuditedRequest {
            action: format!("{} {route}", request.method()),
            target_type,
            target_id,
        }
    }

    /// Appends the entry; a failure is logged, never turned into the caller's error (the work
    /// is done by now).
    async fn record(
        self,
        storage: &crate::storage::Storage,
        actor: String,
        status: axum::http::StatusCode,
        target: Option<AuditTarget>,
    ) {
        let target_id = target.map(|t| t.0).or(self.target_id);
        let entry = crate::storage::AuditEntry {
            at: crate::time::Timestamp::now(),
            actor,
            action: self.action,
            target_type: self.target_type,
            target_id,
            details: serde_json::json!({ "status": status.as_u16() }),
        };
        if let Err(e) = storage.append_audit(&entry).await {
            tracing::warn!(error = %e, "cannot write the audit entry of an API request");
        }
    }
}
