//! `GET|POST /api/v1/units`, `GET /api/v1/units/{code}`: the organisation tree.

use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::ApiJson;
use crate::storage::{Actor, NewUnit, Unit};
use crate::time::Timestamp;
use crate::units::UnitCode;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUnitRequest {
    /// 1 to 64 of letters, digits, `-`, `_` and `.`; unique.
    #[schema(example = "LYON-2")]
    pub code: String,
    #[schema(example = "Lyon 2 – Part-Dieu")]
    pub name: String,
    /// The parent unit's code; absent for a root (the company).
    #[schema(example = "RHONE")]
    pub parent: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnitBody {
    pub code: String,
    pub name: String,
    pub parent: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnitDetail {
    #[serde(flatten)]
    pub unit: UnitBody,
    /// Codes from the root down to the parent.
    pub ancestors: Vec<String>,
    /// Codes of the direct children.
    pub children: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnitList {
    pub units: Vec<UnitBody>,
}

impl From<Unit> for UnitBody {
    fn from(unit: Unit) -> Self {
        UnitBody {
            code: unit.code.to_string(),
            name: unit.name,
            parent: unit.parent.map(String::from),
            created_at: unit.created_at.as_datetime(),
        }
    }
}

impl CreateUnitRequest {
    /// Every field checked, every problem reported at once.
    fn validate(self) -> Result<NewUnit, ApiError> {
        let mut problems = Map::new();
        let code = UnitCode::parse(&self.code)
            .map_err(|e| problems.insert("code".into(), Value::from(e.to_string())))
            .ok();
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            problems.insert(
                "name".into(),
                Value::from(format!("must be 1 to {MAX_NAME_CHARS} characters")),
            );
        }
        let parent = match self.parent.as_deref() {
            None => Some(None),
            Some(raw) => UnitCode::parse(raw)
                .map(Some)
                .map_err(|e| problems.insert("parent".into(), Value::from(e.to_string())))
                .ok(),
        };
        match (code, parent) {
            (Some(code), Some(parent)) if problems.is_empty() => Ok(NewUnit { code, name, parent }),
            _ => Err(ApiError::invalid_fields(problems)),
        }
    }
}

/// Lists every unit, ordered by code.
#[utoipa::path(
    get, path = "/units", tag = "units",
    security(("api_key" = [])),
    responses(
        (status = 200, body = UnitList),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn list_units(State(state): State<AppState>) -> Result<Json<UnitList>, ApiError> {
    let units = state.storage.units().await?;
    Ok(Json(UnitList {
        units: units.into_iter().map(UnitBody::from).collect(),
    }))
}

/// Adds a unit under an existing parent, or as a root.
#[utoipa::path(
    post, path = "/units", tag = "units",
    security(("api_key" = [])),
    request_body = CreateUnitRequest,
    responses(
        (status = 201, body = UnitBody),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "A unit with this code exists", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid fields, or unknown parent", body = ErrorBody),
    )
)]
pub async fn create_unit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<CreateUnitRequest>,
) -> Result<(StatusCode, Json<UnitBody>), ApiError> {
    let new = request.validate()?;
    let unit = state
        .storage
        .create_unit(&new, &Actor::ApiKey(caller.key_id), Timestamp::now())
        .await?;
    Ok((StatusCode::CREATED, Json(unit.into())))
}

/// One unit with its place in the tree.
#[utoipa::path(
    get, path = "/units/{code}", tag = "units",
    security(("api_key" = [])),
    params(("code" = String, Path, description = "The unit's code")),
    responses(
        (status = 200, body = UnitDetail),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn get_unit(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<UnitDetail>, ApiError> {
    let code = UnitCode::parse(&code).map_err(|_| ApiError::not_found("unit"))?;
    let unit = state
        .storage
        .unit(&code)
        .await?
        .ok_or_else(|| ApiError::not_found("unit"))?;
    let ancestors = state.storage.unit_ancestors(&code).await?;
    let children = state.storage.unit_children(&code).await?;
    Ok(Json(UnitDetail {
        unit: unit.into(),
        ancestors: ancestors.into_iter().map(String::from).collect(),
        children: children.into_iter().map(String::from).collect(),
    }))
}

/// A listing's `unit` filter names a unit that exists: an unknown code is a 422, not an empty
/// list that would read as "no data".
pub(super) async fn require_known_unit(
    storage: &crate::storage::Storage,
    unit: Option<&str>,
) -> Result<(), ApiError> {
    let Some(unit) = unit else { return Ok(()) };
    if storage.unit_id(unit).await?.is_some() {
        return Ok(());
    }
    let mut problems = Map::new();
    problems.insert(
        "unit".into(),
        Value::from(format!(
            "no unit has the code '{}'",
            crate::intake::shown(unit)
        )),
    );
    Err(ApiError::invalid_fields(problems))
}
