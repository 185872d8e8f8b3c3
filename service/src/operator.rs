//! The operator's view of the outbox over HTTP (on `ADMIN_ADDR`, see `http.rs`):
//! `GET /outbox` lists the rows that are not sent (REJECTED first, at most 100, with the peer's
//! answer or the last error; e-mails, names and phone numbers in payloads masked as in the logs),
//! and `POST /outbox/redrive` puts REJECTED rows back in line
//! (all of them, or one with `?id=N`) once the cause is fixed on course-service's side. A re-driven
//! row keeps its event id, so a peer that did apply it deduplicates the second copy.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::telemetry;

/// Rows `GET /outbox` returns at most.
const LISTED: i64 = 100;

/// One unsent row.
#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UnsentRow {
    id: i64,
    event_id: uuid::Uuid,
    event_type: String,
    aggregate_id: String,
    status: String,
    retry_count: i32,
    last_error: Option<String>,
    payload: serde_json::Value,
}

/// `GET /outbox`.
pub(crate) async fn unsent(
    State(app): State<Arc<App>>,
) -> Result<Json<Vec<UnsentRow>>, (StatusCode, String)> {
    sqlx::query_as(
        "SELECT id, event_id, event_type, aggregate_id, status, retry_count, last_error, payload \
         FROM outbox_events WHERE status <> 'SENT' ORDER BY (status = 'REJECTED') DESC, id LIMIT $1",
    )
    .bind(LISTED)
    .fetch_all(&app.pool)
    .await
    .map(|mut rows: Vec<UnsentRow>| {
        for row in &mut rows {
            mask(&mut row.payload);
        }
        Json(rows)
    })
    .map_err(database)
}

/// Masks personal data wherever it sits in a payload, as the logs do: enough for an operator to
/// tell rows apart, not to identify a customer.
fn mask(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                let masked = match (key.as_str(), field.as_str()) {
                    ("userEmail", Some(text)) => Some(telemetry::mask_email(text)),
                    ("userName", Some(text)) => Some(telemetry::mask_name(text)),
                    ("userPhone", Some(text)) => Some(telemetry::mask_phone(text)),
                    _ => None,
                };
                match masked {
                    Some(masked) => *field = serde_json::Value::String(masked),
                    None => mask(field),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// `POST /outbox/redrive` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct Redrive {
    /// Only this row.
    id: Option<i64>,
}

/// `POST /outbox/redrive`: REJECTED → PENDING, due now; answers how many rows moved.
pub(crate) async fn redrive(
    State(app): State<Arc<App>>,
    Query(which): Query<Redrive>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let moved = sqlx::query(
        "UPDATE outbox_events SET status = 'PENDING', next_attempt_at = now(), processed_at = NULL \
         WHERE status = 'REJECTED' AND ($1::int8 IS NULL OR id = $1)",
    )
    .bind(which.id)
    .execute(&app.pool)
    .await
    .map_err(database)?
    .rows_affected();
    tracing::warn!(moved, id = ?which.id, "operator re-drove rejected outbox rows");
    // This replica's relay at once, every other one through its LISTEN.
    app.relay_wake.rows_written();
    let _ = sqlx::query("SELECT pg_notify('outbox_events', '')")
        .execute(&app.pool)
        .await;
    Ok(Json(serde_json::json!({ "redriven": moved })))
}

fn database(e: sqlx::Error) -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_masked_wherever_it_sits() {
        let mut payload = serde_json::json!({
            "bookingId": 7,
            "userEmail": "kim@example.com",
            "userName": "김철수",
            "nested": [{"userPhone": "010-1234-5678"}],
        });
        mask(&mut payload);
        assert_eq!(
            payload,
            serde_json::json!({
                "bookingId": 7,
                "userEmail": "k***@example.com",
                "userName": "김***",
                "nested": [{"userPhone": "***-5678"}],
            })
        );
    }
}
