//! What a simulated device measures: a room sensor whose readings look like
//! a real one's on a chart — temperature wandering around its own set
//! point (mean reversion plus noise), humidity likewise, a battery that
//! slowly runs down, a door that is opened now and then — and the
//! occasional alert event.
//!
//! Everything is drawn from the device's own seeded [`Rng`], so a run with
//! `--seed` is reproducible reading by reading.

use serde_json::{Value, json};

use crate::signal::Rng;

/// Seconds for the temperature to forget half of a disturbance (mean
/// reversion of an Ornstein–Uhlenbeck process).
const TEMPERATURE_HALF_LIFE_S: f64 = 600.0;
/// Spread of the temperature's wandering, °C per √second.
const TEMPERATURE_VOLATILITY: f64 = 0.02;
/// Sensor noise on each reading, °C.
const TEMPERATURE_NOISE: f64 = 0.05;
const HUMIDITY_HALF_LIFE_S: f64 = 900.0;
const HUMIDITY_VOLATILITY: f64 = 0.05;
/// Battery drain, percent per hour of sensor time.
const BATTERY_DRAIN_PER_HOUR: f64 = 0.6;
/// A door is opened or closed on average once in this many seconds.
const DOOR_MEAN_INTERVAL_S: f64 = 600.0;
/// A device raises a spontaneous alert on average once in this many
/// seconds (besides those its readings cross a threshold for).
const ALERT_MEAN_INTERVAL_S: f64 = 900.0;
/// The battery level under which a `battery_low` alert is raised once.
const BATTERY_LOW: f64 = 20.0;
/// Degrees above its set point at which a device raises `temperature_high`
/// (and below which, less the hysteresis, it may raise it again).
const TEMPERATURE_ALERT_ABOVE: f64 = 2.0;
const TEMPERATURE_HYSTERESIS: f64 = 0.5;

/// One device's sensors between readings.
#[derive(Debug, Clone)]
pub struct Sensors {
    rng: Rng,
    set_point: f64,
    temperature: f64,
    humidity_mean: f64,
    humidity: f64,
    battery: f64,
    door_open: bool,
    temperature_alerted: bool,
    battery_alerted: bool,
}

/// One reading: the telemetry values, and an alert when one is due.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub values: Value,
    pub alert: Option<Value>,
}

impl Sensors {
    /// A device's sensors, each device with its own set point, humidity
    /// and battery charge.
    pub fn new(mut rng: Rng) -> Self {
        let set_point = 19.0 + 4.0 * rng.uniform();
        let humidity_mean = 35.0 + 20.0 * rng.uniform();
        let battery = 60.0 + 40.0 * rng.uniform();
        Sensors {
            temperature: set_point + rng.normal() * 0.3,
            humidity: humidity_mean + rng.normal(),
            door_open: rng.uniform() < 0.1,
            rng,
            set_point,
            humidity_mean,
            battery,
            temperature_alerted: false,
            battery_alerted: false,
        }
    }

    /// Advances the sensors by `dt_s` seconds and reads them.
    pub fn read(&mut self, dt_s: f64) -> Reading {
        let dt = dt_s.max(0.0);
        self.temperature = ornstein_uhlenbeck(
            &mut self.rng,
            self.temperature,
            self.set_point,
            TEMPERATURE_HALF_LIFE_S,
            TEMPERATURE_VOLATILITY,
            dt,
        );
        self.humidity = ornstein_uhlenbeck(
            &mut self.rng,
            self.humidity,
            self.humidity_mean,
            HUMIDITY_HALF_LIFE_S,
            HUMIDITY_VOLATILITY,
            dt,
        )
        .clamp(0.0, 100.0);
        self.battery = (self.battery - BATTERY_DRAIN_PER_HOUR * dt / 3600.0).max(0.0);
        if self.rng.uniform() < chance(dt, DOOR_MEAN_INTERVAL_S) {
            self.door_open = !self.door_open;
        }
        let temperature = round(self.temperature + self.rng.normal() * TEMPERATURE_NOISE, 2);
        let values = json!({
            "temperature": temperature,
            "humidity": round(self.humidity, 1),
            "battery": round(self.battery, 1),
            "door_open": self.door_open,
        });
        let alert = self.alert(temperature, dt);
        Reading { values, alert }
    }

    /// An alert when a reading crosses a threshold, or, rarely, by chance.
    fn alert(&mut self, temperature: f64, dt: f64) -> Option<Value> {
        let high = self.set_point + TEMPERATURE_ALERT_ABOVE;
        if self.temperature_alerted && temperature < high - TEMPERATURE_HYSTERESIS {
            self.temperature_alerted = false;
        }
        if !self.temperature_alerted && temperature > high {
            self.temperature_alerted = true;
            return Some(json!({
                "code": "temperature_high",
                "severity": "warning",
                "temperature": temperature,
                "threshold": round(high, 2),
            }));
        }
        if !self.battery_alerted && self.battery < BATTERY_LOW {
            self.battery_alerted = true;
            return Some(json!({
                "code": "battery_low",
                "severity": "minor",
                "battery": round(self.battery, 1),
            }));
        }
        if self.rng.uniform() < chance(dt, ALERT_MEAN_INTERVAL_S) {
            return Some(json!({
                "code": "tamper",
                "severity": "info",
                "message": "enclosure vibration above threshold",
            }));
        }
        None
    }
}

/// One step of an Ornstein–Uhlenbeck process: pulled back towards `mean`
/// with the given half-life, pushed about by Gaussian noise.
fn ornstein_uhlenbeck(
    rng: &mut Rng,
    x: f64,
    mean: f64,
    half_life_s: f64,
    volatility: f64,
    dt: f64,
) -> f64 {
    let theta = std::f64::consts::LN_2 / half_life_s;
    let decay = (-theta * dt).exp();
    // The exact transition, so that a long gap (a device catching up after
    // being offline) is as plausible as many small steps.
    let spread = volatility * ((1.0 - decay * decay) / (2.0 * theta)).sqrt();
    mean + (x - mean) * decay + spread * rng.normal()
}

/// The chance that an event with this mean interval happens within `dt`.
fn chance(dt: f64, mean_interval_s: f64) -> f64 {
    1.0 - (-dt / mean_interval_s).exp()
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(seed: u64, n: usize, dt: f64) -> Vec<Reading> {
        let mut s = Sensors::new(Rng::new(seed));
        (0..n).map(|_| s.read(dt)).collect()
    }

    fn number(r: &Reading, key: &str) -> f64 {
        r.values[key].as_f64().unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_readings() {
        assert_eq!(series(7, 100, 1.0), series(7, 100, 1.0));
        assert_ne!(series(7, 100, 1.0), series(8, 100, 1.0));
    }

    #[test]
    fn temperature_varies_slowly_around_its_set_point() {
        let readings = series(3, 3600, 1.0);
        let temps: Vec<f64> = readings.iter().map(|r| number(r, "temperature")).collect();
        // Plausible room temperatures all along …
        assert!(temps.iter().all(|t| (15.0..28.0).contains(t)), "{temps:?}");
        // … that move, but only a little from one second to the next.
        let steps: Vec<f64> = temps.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
        assert!(steps.iter().all(|s| *s < 0.5), "a jump in {steps:?}");
        let first = temps[0];
        assert!(temps.iter().any(|t| (t - first).abs() > 0.05));
    }

    #[test]
    fn humidity_stays_a_percentage_and_the_battery_only_falls() {
        let readings = series(11, 2000, 10.0);
        for r in &readings {
            assert!((0.0..=100.0).contains(&number(r, "humidity")));
            assert!(r.values["door_open"].is_boolean());
        }
        let battery: Vec<f64> = readings.iter().map(|r| number(r, "battery")).collect();
        assert!(battery.windows(2).all(|w| w[1] <= w[0]));
        assert!(battery.last() < battery.first());
    }

    #[test]
    fn doors_flip_and_alerts_are_rare() {
        // Ten simulated hours at one reading a second.
        let readings = series(5, 36_000, 1.0);
        let flips = readings
            .windows(2)
            .filter(|w| w[0].values["door_open"] != w[1].values["door_open"])
            .count();
        // Once in 10 minutes on average: about 60.
        assert!((20..150).contains(&flips), "{flips} door flips");
        let alerts = readings.iter().filter(|r| r.alert.is_some()).count();
        // Spontaneous ones once in 15 minutes (about 40), few crossings.
        assert!((10..120).contains(&alerts), "{alerts} alerts");
        for alert in readings.iter().filter_map(|r| r.alert.as_ref()) {
            assert!(alert["code"].is_string() && alert["severity"].is_string());
        }
    }

    #[test]
    fn a_low_battery_is_reported_once() {
        let mut s = Sensors::new(Rng::new(1));
        s.battery = BATTERY_LOW + 0.001;
        let alerts: Vec<Value> = (0..100)
            .filter_map(|_| s.read(60.0).alert)
            .filter(|a| a["code"] == "battery_low")
            .collect();
        assert_eq!(alerts.len(), 1);
    }
}
