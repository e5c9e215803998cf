//! Telemetry history: raw points, bucketed aggregates, latest values, keys,
//! and one key across devices.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use ferrule_core::{DeviceId, TenantId};
use ferrule_store::telemetry::{Agg, Order, Point, Range, SeriesQuery, TelemetryValue};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::devices::device_id;
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::state::{AppState, TelemetryApi};

/// Raw points per key when `limit` is absent.
const DEFAULT_LIMIT: usize = 1000;
/// The most raw points per key one request may ask for.
const MAX_LIMIT: usize = 100_000;
/// Most keys or devices one request may name.
const MAX_NAMES: usize = 100;
/// Most buckets one aggregate may return (a month of minutes fits), which
/// bounds the memory a request can ask for.
const MAX_BUCKETS: i64 = 100_000;

/// One point: `ts` in ms since the Unix epoch (with `agg`, the bucket's start).
#[derive(Debug, Serialize, ToSchema)]
pub struct PointView {
    pub ts: i64,
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

pub fn json_value(v: &TelemetryValue) -> serde_json::Value {
    v.to_json()
}

fn view(p: &Point) -> PointView {
    PointView {
        ts: p.ts,
        value: json_value(&p.value),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Comma-separated keys; all of the device's keys when absent.
    pub keys: Option<String>,
    /// Start (inclusive): ms since the Unix epoch or RFC 3339. Default: the
    /// beginning of time for raw points; with `agg`, 24 hours before `to`
    /// (before now when `to` is absent), so that buckets stay few.
    #[param(schema_with = super::vocabulary::time_param)]
    pub from: Option<String>,
    /// End (exclusive): ms since the Unix epoch or RFC 3339; default a day
    /// past now (devices whose clocks run ahead are included).
    #[param(schema_with = super::vocabulary::time_param)]
    pub to: Option<String>,
    /// avg, min, max, sum, count, first or last, per `interval` bucket.
    #[param(value_type = Option<super::vocabulary::AggName>, inline)]
    pub agg: Option<Agg>,
    /// Bucket width with `agg`: `500ms`, `30s`, `1m`, `1h`, `1d`, `1w`
    /// or plain milliseconds; default the whole range; ignored without `agg`.
    #[param(pattern = "^[1-9][0-9]{0,12}(ms|s|m|h|d|w)?$")]
    pub interval: Option<String>,
    /// Raw points per key, 1 to 100000 (default 1000).
    #[param(minimum = 1, maximum = 100000)]
    pub limit: Option<usize>,
    /// `asc` (default: the oldest `limit` points of the range) or `desc`
    /// (the newest); points are returned oldest first either way.
    #[param(value_type = Option<super::vocabulary::OrderName>, inline)]
    pub order: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AcrossQuery {
    /// The key to read.
    pub key: String,
    /// Comma-separated device ids; every device with data when absent.
    pub devices: Option<String>,
    /// As in the per-device history: with `agg`, default 24 hours before
    /// `to` (before now when `to` is absent).
    #[param(schema_with = super::vocabulary::time_param)]
    pub from: Option<String>,
    #[param(schema_with = super::vocabulary::time_param)]
    pub to: Option<String>,
    #[param(value_type = Option<super::vocabulary::AggName>, inline)]
    pub agg: Option<Agg>,
    #[param(pattern = "^[1-9][0-9]{0,12}(ms|s|m|h|d|w)?$")]
    pub interval: Option<String>,
    #[param(minimum = 1, maximum = 100000)]
    pub limit: Option<usize>,
    #[param(value_type = Option<super::vocabulary::OrderName>, inline)]
    pub order: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LatestQuery {
    /// Comma-separated keys; all keys when absent.
    pub keys: Option<String>,
}

/// A time parameter: ms since the Unix epoch, or RFC 3339.
pub fn parse_time(field: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    v.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            ApiError::invalid(
                field,
                "must be milliseconds since the Unix epoch or an RFC 3339 time",
            )
        })
}

/// A bucket width: a number and a unit (ms, s, m, h, d, w) or plain ms.
pub fn parse_interval(v: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::invalid(
            "interval",
            "must be a positive width such as 30s, 1m, 1h, 1d or plain milliseconds",
        )
    };
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms).filter(|w| *w > 0).ok_or_else(bad)
}

/// The window of an aggregate query without `from`: a whole history
/// would mostly be empty buckets, or too many of them.
pub const DEFAULT_AGG_WINDOW_MS: i64 = 86_400_000;

pub fn parse_range(from: Option<&str>, to: Option<&str>) -> Result<Range, ApiError> {
    parse_range_for(from, to, false)
}

/// `from`/`to`; an aggregate (`agg`) without `from` covers the 24 hours
/// before `to`, or before now when `to` is absent too.
fn parse_range_for(from: Option<&str>, to: Option<&str>, agg: bool) -> Result<Range, ApiError> {
    let now = ferrule_core::message::now_ms();
    let given_to = to.map(|t| parse_time("to", t)).transpose()?;
    let from = match from {
        Some(f) => parse_time("from", f)?,
        None if agg => given_to
            .unwrap_or(now)
            .saturating_sub(DEFAULT_AGG_WINDOW_MS),
        None => 0,
    };
    // "Up to now", with room for devices whose clocks run a little ahead.
    let to = given_to.unwrap_or_else(|| now.saturating_add(86_400_000));
    // A range that ends before it starts holds nothing: an empty answer,
    // not an error (no API document can state an order between parameters).
    Ok(Range {
        from: from.min(to),
        to,
    })
}

fn names(field: &str, v: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let list: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    // `keys=` names nothing: the same as leaving it out.
    if list.is_empty() {
        return Ok(None);
    }
    if list.len() > MAX_NAMES {
        return Err(ApiError::invalid(
            field,
            format!("may name at most {MAX_NAMES}"),
        ));
    }
    Ok(Some(list))
}

/// How one series is read: raw or aggregated.
struct Read {
    range: Range,
    agg: Option<(Agg, i64)>,
    order: Order,
    limit: usize,
}

impl Read {
    fn new(
        from: Option<&str>,
        to: Option<&str>,
        agg: Option<Agg>,
        interval: Option<&str>,
        limit: Option<usize>,
        order: Option<&str>,
    ) -> Result<Read, ApiError> {
        let range = parse_range_for(from, to, agg.is_some())?;
        let agg = match (agg, interval) {
            (Some(a), Some(i)) => Some((a, parse_interval(i)?)),
            (Some(a), None) => Some((a, range.to.saturating_sub(range.from).max(1))),
            // A width means nothing without an aggregate to fill it; it is
            // still checked, so a malformed one is not silently ignored.
            (None, Some(i)) => {
                parse_interval(i)?;
                None
            }
            (None, None) => None,
        };
        if let Some((_, interval)) = agg {
            let buckets = (i128::from(range.to) - i128::from(range.from)) / i128::from(interval);
            if buckets >= i128::from(MAX_BUCKETS) {
                return Err(ApiError::invalid(
                    "interval",
                    format!(
                        "the range holds more than {MAX_BUCKETS} buckets of this width: \
                         narrow from/to or widen the interval"
                    ),
                ));
            }
        }
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let order = match order {
            None | Some("asc") => Order::Oldest,
            Some("desc") => Order::Newest,
            Some(_) => return Err(ApiError::invalid("order", "must be asc or desc")),
        };
        Ok(Read {
            range,
            agg,
            order,
            limit,
        })
    }

    async fn series(
        &self,
        t: &TelemetryApi,
        tenant: &TenantId,
        device: &DeviceId,
        key: &str,
    ) -> ApiResult<Vec<PointView>> {
        Ok(match self.agg {
            Some((agg, interval)) => t
                .store
                .aggregate(
                    SeriesQuery::new(tenant, device, key, self.range),
                    interval,
                    agg,
                )
                .await?
                .into_iter()
                .map(|(ts, v)| PointView {
                    ts,
                    value: json_value(&TelemetryValue::Number(v)),
                })
                .collect(),
            None => t
                .store
                .raw(
                    SeriesQuery::new(tenant, device, key, self.range),
                    self.order,
                    self.limit,
                )
                .await?
                .iter()
                .map(view)
                .collect(),
        })
    }
}

/// Reads a device's telemetry history, raw or aggregated.
#[utoipa::path(get, operation_id = "getTelemetryHistory", path = "/api/v1/devices/{id}/telemetry", tag = "telemetry",
    params(("id" = String, Path), HistoryQuery),
    responses((status = 200, description = "Points per key: {\"KEY\": [{\"ts\", \"value\"}]}",
        body = BTreeMap<String, Vec<PointView>>),
        (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<BTreeMap<String, Vec<PointView>>>> {
    let t = state.telemetry()?;
    let device = device_id(&id)?;
    state.store().get_device(&caller.tenant, &device).await?;
    let read = Read::new(
        q.from.as_deref(),
        q.to.as_deref(),
        q.agg,
        q.interval.as_deref(),
        q.limit,
        q.order.as_deref(),
    )?;
    let keys = match names("keys", q.keys.as_deref())? {
        Some(k) => k,
        None => t.store.keys(&caller.tenant, &device).await?,
    };
    let mut out = BTreeMap::new();
    for key in keys {
        let points = read.series(t, &caller.tenant, &device, &key).await?;
        out.insert(key, points);
    }
    Ok(Json(out))
}

/// Reads the latest value of each of a device's keys.
#[utoipa::path(get, operation_id = "getLatestTelemetry", path = "/api/v1/devices/{id}/telemetry/latest", tag = "telemetry",
    params(("id" = String, Path), LatestQuery),
    responses((status = 200, description = "{\"KEY\": {\"ts\", \"value\"}}",
        body = BTreeMap<String, PointView>), (status = 404, body = Problem)))]
pub async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LatestQuery>,
) -> ApiResult<Json<BTreeMap<String, PointView>>> {
    let t = state.telemetry()?;
    let device = device_id(&id)?;
    state.store().get_device(&caller.tenant, &device).await?;
    let keys = names("keys", q.keys.as_deref())?.unwrap_or_default();
    let latest = t.store.latest(&caller.tenant, &device, &keys).await?;
    Ok(Json(
        latest.iter().map(|(k, p)| (k.clone(), view(p))).collect(),
    ))
}

/// Lists the telemetry keys a device has sent.
#[utoipa::path(get, operation_id = "listTelemetryKeys", path = "/api/v1/devices/{id}/telemetry/keys", tag = "telemetry",
    params(("id" = String, Path)),
    responses((status = 200, description = "The keys the device has sent, sorted", body = Vec<String>),
        (status = 404, body = Problem)))]
pub async fn keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<String>>> {
    let t = state.telemetry()?;
    let device = device_id(&id)?;
    state.store().get_device(&caller.tenant, &device).await?;
    Ok(Json(t.store.keys(&caller.tenant, &device).await?))
}

/// Reads one key across the tenant's devices.
#[utoipa::path(get, operation_id = "getTelemetryAcrossDevices", path = "/api/v1/telemetry", tag = "telemetry", params(AcrossQuery),
    responses((status = 200, description = "Points of one key per device: {\"DEVICE\": [{\"ts\", \"value\"}]}",
        body = BTreeMap<String, Vec<PointView>>), (status = 400, body = Problem)))]
pub async fn across(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AcrossQuery>,
) -> ApiResult<Json<BTreeMap<String, Vec<PointView>>>> {
    let t = state.telemetry()?;
    let read = Read::new(
        q.from.as_deref(),
        q.to.as_deref(),
        q.agg,
        q.interval.as_deref(),
        q.limit,
        q.order.as_deref(),
    )?;
    let devices: Vec<DeviceId> = match names("devices", q.devices.as_deref())? {
        // Ids that cannot exist simply have no data.
        Some(list) => list.iter().filter_map(|d| DeviceId::new(d).ok()).collect(),
        None => t.store.devices(&caller.tenant).await?,
    };
    let mut out = BTreeMap::new();
    for device in devices {
        let points = read.series(t, &caller.tenant, &device, &q.key).await?;
        if !points.is_empty() {
            out.insert(device.to_string(), points);
        }
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_times() {
        assert_eq!(parse_interval("1m").unwrap(), 60_000);
        assert_eq!(parse_interval("250").unwrap(), 250);
        assert_eq!(parse_interval("2d").unwrap(), 172_800_000);
        for bad in ["", "0s", "-1m", "1y", "m", "99999999999999999w"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_time("from", "1700000000000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("from", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_time("from", "yesterday").is_err());
    }

    #[test]
    fn an_aggregate_without_from_covers_the_day_before_to() {
        let to = 1_700_000_000_000i64;
        let r = Read::new(
            None,
            Some(&to.to_string()),
            Some(Agg::Avg),
            Some("1m"),
            None,
            None,
        )
        .unwrap();
        assert_eq!((r.range.from, r.range.to), (to - DEFAULT_AGG_WINDOW_MS, to));
        // Without `to` either: the last day up to now (and `to`'s margin).
        let now = ferrule_core::message::now_ms();
        let r = Read::new(None, None, Some(Agg::Max), Some("1m"), None, None).unwrap();
        assert!((r.range.from - (now - DEFAULT_AGG_WINDOW_MS)).abs() < 5_000);
        // Raw points still start at the beginning.
        let r = Read::new(None, None, None, None, None, None).unwrap();
        assert_eq!(r.range.from, 0);
    }
}
