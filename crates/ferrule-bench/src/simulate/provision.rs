//! The simulated devices' side of the HTTP API: the caller's credentials
//! (an API key or session token, or the admin's login), then each device
//! created — or, when it exists already, reused with a new access token of
//! its own (the device's other credentials are left alone).

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::signal::Rng;

/// API requests in flight while provisioning.
const PIPELINE: usize = 16;
/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The first admin a fresh server creates, when only a password is given.
const DEFAULT_ADMIN_EMAIL: &str = "admin@localhost";
/// A reused device's new token outlives a timed run by this much, so that
/// tokens of finished runs do not pile up as live credentials.
const TOKEN_SPARE: Duration = Duration::from_secs(24 * 3600);

/// How the simulator signs in to the API.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// An API key (`fk_…`) or a session token (`fs_…`).
    Token(String),
    Login {
        email: String,
        password: String,
    },
}

impl Credentials {
    /// `--token`/`FERRULE_TOKEN` first, else the admin's email and
    /// password from the environment.
    pub fn choose(
        token: Option<String>,
        email: Option<String>,
        password: Option<String>,
    ) -> anyhow::Result<Self> {
        let token = token.filter(|t| !t.trim().is_empty());
        if let Some(token) = token {
            return Ok(Credentials::Token(token.trim().to_owned()));
        }
        match password.filter(|p| !p.is_empty()) {
            Some(password) => Ok(Credentials::Login {
                email: email
                    .filter(|e| !e.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_ADMIN_EMAIL.to_owned()),
                password,
            }),
            None => bail!(
                "no credentials for the API: pass --token (or set FERRULE_TOKEN) to an API key \
                 with role editor or higher, or set FERRULE_ADMIN_EMAIL and FERRULE_ADMIN_PASSWORD"
            ),
        }
    }
}

/// The API of one server, as one caller in one tenant.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    bearer: String,
    tenant: Option<String>,
}

/// A device ready to connect: its id and an access token for it.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub token: String,
}

/// How many devices were created and how many reused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Provisioned {
    pub created: usize,
    pub reused: usize,
}

impl Api {
    /// Checks that the server answers, then signs in.
    pub async fn connect(
        base: &str,
        credentials: Credentials,
        tenant: Option<String>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        let base = base.trim_end_matches('/').to_owned();
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| {
                format!(
                    "cannot reach Ferrule at {base}: is `ferrule serve` running there? \
                     (pass its address with --server)"
                )
            })?;
        let bearer = match credentials {
            Credentials::Token(token) => token,
            Credentials::Login { email, password } => {
                login(&client, &base, &email, &password).await?
            }
        };
        Ok(Api {
            client,
            base,
            bearer,
            tenant,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.bearer);
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Tenant", tenant);
        }
        request
    }

    /// Creates (or reuses) every device in `ids`, `PIPELINE` requests at a
    /// time, calling `progress` after each. The first failure stops it:
    /// a caller without the right, or a tenant or profile that does not
    /// exist, fails every device the same way.
    pub async fn provision(
        &self,
        ids: &[String],
        profile: Option<&str>,
        token_lifetime: Option<Duration>,
        seed: u64,
        mut progress: impl FnMut(usize),
    ) -> anyhow::Result<(Vec<Device>, Provisioned)> {
        let mut pending = JoinSet::new();
        let mut ready: Vec<Option<Device>> = vec![None; ids.len()];
        let mut counts = Provisioned::default();
        let expires_at = token_lifetime
            .map(|life| jiff::Timestamp::now() + (life + TOKEN_SPARE))
            .map(|t| t.to_string());
        let mut next = 0;
        let mut done = 0;
        loop {
            while pending.len() < PIPELINE && next < ids.len() {
                let api = self.clone();
                let id = ids[next].clone();
                let profile = profile.map(str::to_owned);
                let expires_at = expires_at.clone();
                let index = next;
                let location = location(seed, index);
                pending.spawn(async move {
                    let result = api
                        .device(&id, profile.as_deref(), location, expires_at.as_deref())
                        .await;
                    (index, id, result)
                });
                next += 1;
            }
            let Some(joined) = pending.join_next().await else {
                break;
            };
            let (index, id, result) = joined.context("a provisioning task panicked")?;
            let (token, created) = result?;
            if created {
                counts.created += 1;
            } else {
                counts.reused += 1;
            }
            ready[index] = Some(Device { id, token });
            done += 1;
            progress(done);
        }
        let devices = ready
            .into_iter()
            .map(|d| d.context("a device was not provisioned"))
            .collect::<anyhow::Result<_>>()?;
        Ok((devices, counts))
    }

    /// `POST /devices`, or on 409 (it exists) a new token credential for
    /// it: (token, created).
    async fn device(
        &self,
        id: &str,
        profile: Option<&str>,
        location: Value,
        expires_at: Option<&str>,
    ) -> anyhow::Result<(String, bool)> {
        let mut body = json!({
            "id": id,
            "attributes": {
                "labels": {"simulated": "true"},
                "location": location,
            },
        });
        if let Some(profile) = profile {
            body["profile"] = json!(profile);
        }
        let response = self
            .request(reqwest::Method::POST, "/api/v1/devices")
            .json(&body)
            .send()
            .await
            .with_context(|| format!("creating device {id}"))?;
        if response.status() != StatusCode::CONFLICT {
            let body = answer(response, &format!("creating device {id}")).await?;
            return token_of(&body, id).map(|t| (t, true));
        }
        let mut credential = json!({"type": "token"});
        if let Some(at) = expires_at {
            credential["expires_at"] = json!(at);
        }
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/devices/{id}/credentials"),
            )
            .json(&credential)
            .send()
            .await
            .with_context(|| format!("adding a token to device {id}"))?;
        let body = answer(response, &format!("adding a token to existing device {id}")).await?;
        token_of(&body, id).map(|t| (t, false))
    }
}

/// A spot near a few cities, so that a dashboard's map has something to
/// show; fixed per device index and seed.
fn location(seed: u64, index: usize) -> Value {
    const CITIES: [(f64, f64); 4] = [
        (52.52, 13.405),
        (48.857, 2.352),
        (40.713, -74.006),
        (35.676, 139.65),
    ];
    let mut rng = Rng::new(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (lat, lon) = CITIES[index % CITIES.len()];
    let round = |x: f64| (x * 1e5).round() / 1e5;
    json!({
        "lat": round(lat + (rng.uniform() - 0.5) * 0.2),
        "lon": round(lon + (rng.uniform() - 0.5) * 0.3),
    })
}

async fn login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .context("logging in")?;
    if response.status() == StatusCode::UNAUTHORIZED {
        bail!(
            "logging in as {email} failed: check FERRULE_ADMIN_EMAIL and FERRULE_ADMIN_PASSWORD \
             (or pass an API key with --token)"
        );
    }
    let body = answer(response, &format!("logging in as {email}")).await?;
    body["token"]
        .as_str()
        .map(str::to_owned)
        .context("the login answer has no token")
}

fn token_of(body: &Value, id: &str) -> anyhow::Result<String> {
    body["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the answer for device {id} has no token"))
}

/// The JSON of a 2xx answer; otherwise an error naming what was being done,
/// the status and the problem's detail, with a hint for the usual causes.
async fn answer(response: reqwest::Response, doing: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        return serde_json::from_str(&text)
            .with_context(|| format!("{doing}: the answer is not JSON"));
    }
    let detail = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|p| {
            p["detail"]
                .as_str()
                .or(p["title"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| text.chars().take(200).collect());
    let hint = match status {
        StatusCode::UNAUTHORIZED => {
            ": the token is not valid (expired or revoked?): pass another with --token"
        }
        StatusCode::FORBIDDEN => {
            ": creating devices needs role editor, owner or admin (and --tenant needs admin)"
        }
        _ => "",
    };
    bail!("{doing}: {status}: {detail}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_wins_over_a_login() {
        let c = Credentials::choose(Some("fk_x".into()), Some("a@b".into()), Some("pw".into()));
        assert!(matches!(c.unwrap(), Credentials::Token(t) if t == "fk_x"));
    }

    #[test]
    fn a_password_alone_logs_in_as_the_first_admin() {
        let c = Credentials::choose(None, None, Some("pw".into())).unwrap();
        assert!(
            matches!(c, Credentials::Login { email, password } if email == DEFAULT_ADMIN_EMAIL && password == "pw")
        );
    }

    #[test]
    fn no_credentials_says_what_to_give() {
        let e = Credentials::choose(Some("  ".into()), Some("a@b".into()), None).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("--token") && e.contains("FERRULE_ADMIN_PASSWORD"),
            "{e}"
        );
    }

    #[test]
    fn locations_are_fixed_per_device_and_plausible() {
        assert_eq!(location(1, 5), location(1, 5));
        assert_ne!(location(1, 5), location(1, 6));
        let l = location(9, 0);
        assert!((l["lat"].as_f64().unwrap() - 52.52).abs() < 0.2);
    }
}
