//! `GET /api/v1/export`: a tenant's telemetry and events as NDJSON or CSV,
//! streamed as it is read — memory stays flat whatever the size.

use std::io::Write;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferrule_store::telemetry::ExportRecord;
use serde::Deserialize;
use utoipa::IntoParams;

use super::events::event_view;
use super::telemetry::{json_value, parse_range};
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// Bytes gathered before a piece of the body is sent.
const PIECE: usize = 64 * 1024;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// ms since the Unix epoch or RFC 3339 (inclusive); default the beginning.
    #[param(schema_with = super::vocabulary::time_param)]
    pub from: Option<String>,
    /// ms since the Unix epoch or RFC 3339 (exclusive); default a day past now.
    #[param(schema_with = super::vocabulary::time_param)]
    pub to: Option<String>,
    /// `ndjson` (default) or `csv`.
    #[param(value_type = Option<super::vocabulary::ExportFormat>, inline)]
    pub format: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

/// One NDJSON line: `{"kind":"telemetry","device","key","ts","value"}` or
/// `{"kind":"event","device","id","ts","type","payload"}`.
fn ndjson(out: &mut Vec<u8>, record: ExportRecord) {
    let line = match record {
        ExportRecord::Point { device, key, point } => serde_json::json!({
            "kind": "telemetry",
            "device": device.as_str(),
            "key": &*key,
            "ts": point.ts,
            "value": json_value(&point.value),
        }),
        ExportRecord::Event(e) => {
            let mut v = serde_json::to_value(event_view(e)).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("kind".into(), "event".into());
            }
            v
        }
    };
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

/// A CSV field, quoted when it has to be (RFC 4180).
fn csv_field(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// One CSV row: `kind,device,name,ts,value` — name is the key or the event
/// type; an event's value is its payload as text.
fn csv(out: &mut Vec<u8>, record: ExportRecord) {
    let (kind, device, name, ts, value) = match record {
        ExportRecord::Point { device, key, point } => {
            let value = match json_value(&point.value) {
                serde_json::Value::String(s) => s,
                v => v.to_string(),
            };
            (
                "telemetry",
                device.to_string(),
                key.to_string(),
                point.ts,
                value,
            )
        }
        ExportRecord::Event(e) => {
            let value = String::from_utf8_lossy(&e.payload).into_owned();
            ("event", e.device.to_string(), e.event_type, e.ts, value)
        }
    };
    out.extend_from_slice(kind.as_bytes());
    out.push(b',');
    csv_field(out, &device);
    out.push(b',');
    csv_field(out, &name);
    let _ = write!(out, ",{ts},");
    csv_field(out, &value);
    out.extend_from_slice(b"\r\n");
}

/// Exports the tenant's telemetry and events as NDJSON or CSV.
#[utoipa::path(get, operation_id = "exportTelemetry", path = "/api/v1/export", tag = "telemetry", params(ExportQuery),
    responses((status = 200, description = "NDJSON (application/x-ndjson) or CSV (text/csv) of the tenant's telemetry, then its events"),
        (status = 400, body = Problem)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let t = state.telemetry()?;
    let range = parse_range(q.from.as_deref(), q.to.as_deref())?;
    let format = match q.format.as_deref() {
        None | Some("ndjson") => Format::Ndjson,
        Some("csv") => Format::Csv,
        Some(_) => return Err(ApiError::invalid("format", "must be ndjson or csv")),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let store = t.store.clone();
    let tenant = caller.tenant.clone();
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(PIECE);
        if format == Format::Csv {
            buf.extend_from_slice(b"kind,device,name,ts,value\r\n");
        }
        let result = store.export(&tenant, range, &mut |record| {
            match format {
                Format::Ndjson => ndjson(&mut buf, record),
                Format::Csv => csv(&mut buf, record),
            }
            if buf.len() < PIECE {
                return true;
            }
            // Blocks while the client is slow: backpressure all the way to
            // the store. False when the client went away.
            let piece = Bytes::from(std::mem::replace(&mut buf, Vec::with_capacity(PIECE)));
            tx.blocking_send(Ok(piece)).is_ok()
        });
        let last = match result {
            Ok(()) => Ok(Bytes::from(buf)),
            // Headers are gone: cut the body short so the client sees an
            // incomplete transfer rather than a silently partial export.
            Err(e) => {
                tracing::error!(error = %e, "export failed");
                Err(std::io::Error::other(e.to_string()))
            }
        };
        let _ = tx.blocking_send(last);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    let content_type = match format {
        Format::Ndjson => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut out = Vec::new();
        csv_field(&mut out, "plain");
        out.push(b'|');
        csv_field(&mut out, "a,\"b\"\nc");
        assert_eq!(String::from_utf8(out).unwrap(), "plain|\"a,\"\"b\"\"\nc\"");
    }
}
