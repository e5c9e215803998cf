//! A dashboard's widgets: what each kind shows, where it sits on the grid,
//! and the checks that keep a stored layout small and renderable.
//!
//! The grid is 12 columns wide and grows downwards; each widget names the
//! device and keys it shows (a share link exposes exactly those, nothing
//! else of the tenant).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Most widgets a dashboard holds.
pub const MAX_WIDGETS: usize = 64;
/// Most keys one widget shows.
pub const MAX_KEYS: usize = 16;
/// Columns of the grid.
pub const GRID_COLUMNS: u32 = 12;
/// Rows a layout may reach, and rows one widget may span.
const MAX_ROW: u32 = 1_000;
const MAX_HEIGHT: u32 = 24;
/// Largest `options` object of one widget, in bytes of JSON.
const MAX_OPTIONS_BYTES: usize = 4 * 1024;
/// Longest history a chart widget may show: 31 days.
pub const MAX_RANGE_MS: i64 = 31 * 24 * 3600 * 1000;

/// What a widget shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WidgetKind {
    /// The history of its keys over `range_ms`, live as values arrive.
    LineChart,
    /// The latest value of its one key between `options.min` and `options.max`.
    Gauge,
    /// The latest value of each key.
    LatestValue,
    /// The latest values of its keys as a table.
    Table,
    /// The device on a map from its `lat`/`lon` keys (or those `keys` names).
    Map,
    /// A button that sends `options.command` (with `options.params`).
    CommandButton,
    /// The open alarms of its device, or of the tenant without one.
    AlarmList,
}

impl WidgetKind {
    fn needs_device(self) -> bool {
        !matches!(self, WidgetKind::AlarmList)
    }

    fn needs_keys(self) -> bool {
        matches!(
            self,
            WidgetKind::LineChart | WidgetKind::Gauge | WidgetKind::LatestValue | WidgetKind::Table
        )
    }

    /// Whether it shows the history of its keys (not only the latest).
    pub fn shows_history(self) -> bool {
        matches!(self, WidgetKind::LineChart)
    }
}

/// One widget of a dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Widget {
    /// Unique in the dashboard: letters, digits, `-`, `_`, `.`.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        min_length = 1,
        max_length = 64
    )]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: WidgetKind,
    #[schema(max_length = 128)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Column of its left edge, 0 to 11.
    #[schema(minimum = 0, maximum = 11)]
    pub x: u32,
    /// Row of its top edge, 0 to 999.
    #[schema(minimum = 0, maximum = 999)]
    pub y: u32,
    /// Columns wide, 1 to 12 (`x + w` at most 12).
    #[schema(minimum = 1, maximum = 12)]
    pub w: u32,
    /// Rows high, 1 to 24.
    #[schema(minimum = 1, maximum = 24)]
    pub h: u32,
    /// The device it shows (every kind but `alarm_list` needs one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Telemetry keys it shows (charts, gauges, values and tables need at
    /// least one; a gauge exactly one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub keys: Vec<String>,
    /// History a chart shows, in ms: 1 minute to 31 days (default 1 hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 60000, maximum = 2678400000_i64)]
    pub range_ms: Option<i64>,
    /// Settings of its kind (at most 4 KiB): `min`/`max` of a gauge,
    /// `command` and `params` of a button, `unit`, `decimals`, `color`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Widget {
    /// The history a chart shows.
    pub fn range(&self) -> i64 {
        self.range_ms.unwrap_or(3_600_000)
    }
}

/// Checks a layout; the error names the widget and field at fault.
pub fn check(widgets: &[Widget]) -> Result<(), ApiError> {
    if widgets.len() > MAX_WIDGETS {
        return Err(ApiError::invalid(
            "widgets",
            format!("at most {MAX_WIDGETS} widgets"),
        ));
    }
    let mut ids = HashSet::new();
    for (i, w) in widgets.iter().enumerate() {
        let field = |name: &str| format!("widgets[{i}].{name}");
        let bad = |name: &str, why: &str| Err(ApiError::invalid(field(name), why));
        if ferrule_core::id::validate_slug(&w.id).is_err() || w.id.len() > 64 {
            return bad(
                "id",
                "1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
            );
        }
        if !ids.insert(w.id.as_str()) {
            return bad("id", "another widget has this id");
        }
        if w.title.as_ref().is_some_and(|t| t.chars().count() > 128) {
            return bad("title", "at most 128 characters");
        }
        if w.x >= GRID_COLUMNS || w.w == 0 || w.w > GRID_COLUMNS || w.x + w.w > GRID_COLUMNS {
            return bad("w", "x from 0 to 11, w from 1 to 12, x + w at most 12");
        }
        if w.y >= MAX_ROW || w.h == 0 || w.h > MAX_HEIGHT {
            return bad("h", "y from 0 to 999, h from 1 to 24");
        }
        match &w.device {
            Some(d) if ferrule_core::DeviceId::new(d.clone()).is_err() => {
                return bad("device", "not a valid device id");
            }
            None if w.kind.needs_device() => return bad("device", "this kind shows a device"),
            _ => {}
        }
        if w.keys.len() > MAX_KEYS {
            return bad("keys", "at most 16 keys");
        }
        if w.keys
            .iter()
            .any(|k| k.is_empty() || k.len() > 128 || k.chars().any(char::is_control))
        {
            return bad("keys", "keys are 1 to 128 printable characters");
        }
        if w.kind.needs_keys() && w.keys.is_empty() {
            return bad("keys", "this kind shows at least one key");
        }
        if w.kind == WidgetKind::Gauge && w.keys.len() != 1 {
            return bad("keys", "a gauge shows exactly one key");
        }
        if let Some(r) = w.range_ms
            && !(60_000..=MAX_RANGE_MS).contains(&r)
        {
            return bad("range_ms", "from 60000 (a minute) to 2678400000 (31 days)");
        }
        if let Some(o) = &w.options {
            let bytes = serde_json::to_vec(o).map_or(usize::MAX, |v| v.len());
            if bytes > MAX_OPTIONS_BYTES {
                return bad("options", "at most 4 KiB of JSON");
            }
        }
        if w.kind == WidgetKind::CommandButton
            && !w
                .options
                .as_ref()
                .and_then(|o| o.get("command"))
                .and_then(|c| c.as_str())
                .is_some_and(|c| !c.is_empty() && c.len() <= 128)
        {
            return bad(
                "options",
                "a command button names its `command` (1 to 128 characters)",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn widget(v: serde_json::Value) -> Widget {
        serde_json::from_value(v).unwrap()
    }

    fn field_of(widgets: &[Widget]) -> String {
        match check(widgets) {
            Err(ApiError::Invalid { field, .. }) => field.unwrap_or_default(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_valid_layout_passes_and_each_fault_names_its_field() {
        let chart = json!({"id": "t", "type": "line_chart", "x": 0, "y": 0, "w": 6, "h": 4,
            "device": "pump-1", "keys": ["temp"], "range_ms": 3600000});
        let alarms = json!({"id": "a", "type": "alarm_list", "x": 6, "y": 0, "w": 6, "h": 4});
        let button = json!({"id": "b", "type": "command_button", "x": 0, "y": 4, "w": 2, "h": 1,
            "device": "pump-1", "options": {"command": "reboot"}});
        let ok = [
            widget(chart.clone()),
            widget(alarms),
            widget(button.clone()),
        ];
        check(&ok).unwrap();

        let with = |base: &serde_json::Value, k: &str, v: serde_json::Value| {
            let mut w = base.clone();
            w[k] = v;
            widget(w)
        };
        assert_eq!(field_of(&[with(&chart, "x", json!(8))]), "widgets[0].w");
        assert_eq!(field_of(&[with(&chart, "h", json!(0))]), "widgets[0].h");
        assert_eq!(
            field_of(&[with(&chart, "device", json!("../x"))]),
            "widgets[0].device"
        );
        assert_eq!(
            field_of(&[with(&chart, "keys", json!([]))]),
            "widgets[0].keys"
        );
        assert_eq!(
            field_of(&[with(&chart, "range_ms", json!(1))]),
            "widgets[0].range_ms"
        );
        assert_eq!(
            field_of(&[with(&chart, "id", json!("-x"))]),
            "widgets[0].id"
        );
        assert_eq!(
            field_of(&[with(&button, "options", json!({"params": {}}))]),
            "widgets[0].options"
        );
        assert_eq!(
            field_of(&[widget(chart.clone()), widget(chart.clone())]),
            "widgets[1].id"
        );
        let gauge = with(&chart, "type", json!("gauge"));
        assert_eq!(
            field_of(&[with(
                &serde_json::to_value(gauge).unwrap(),
                "keys",
                json!(["a", "b"])
            )]),
            "widgets[0].keys"
        );
        let many: Vec<Widget> = (0..=MAX_WIDGETS)
            .map(|i| with(&chart, "id", json!(format!("w{i}"))))
            .collect();
        assert_eq!(field_of(&many), "widgets");
        let big = with(&chart, "options", json!({"note": "x".repeat(5000)}));
        assert_eq!(field_of(&[big]), "widgets[0].options");
    }
}
