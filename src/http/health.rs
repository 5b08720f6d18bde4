//! Liveness and readiness, for load balancers and orchestrators.

use super::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use serde::Serialize;

#[derive(Serialize)]
pub struct Alive {
    status: &'static str,
}

/// The process answers. Nothing else is checked: a restart would not fix the database.
pub async fn healthz() -> Json<Alive> {
    Json(Alive { status: "alive" })
}

#[derive(Serialize)]
pub struct Ready {
    status: &'static str,
    database: &'static str,
    schema_version: i64,
}

/// The database answers and its schema is the one this instance needs; 503 with the reason if not.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let storage = &state.storage;
    if let Err(e) = storage.ping().await {
        tracing::warn!(error = %e, "not ready: database unreachable");
        return Err(ApiError::not_ready(format!(
            "the database does not answer: {e}"
        )));
    }
    let schema = storage
        .schema_status()
        .await
        .map_err(|e| ApiError::not_ready(format!("cannot read the schema version: {e}")))?;
    if !schema.is_current() {
        return Err(ApiError::not_ready(format!(
            "the database schema is at version {}, this instance needs {}; run `hearback migrate`",
            schema.current.unwrap_or(0),
            schema.required
        )));
    }
    Ok(Json(Ready {
        status: "ready",
        database: storage.backend_name(),
        schema_version: schema.current.unwrap_or(0),
    }))
}
