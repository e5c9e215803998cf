//! The bench's setup through Ferrule's HTTP API, as the admin: tenants, an
//! API key per tenant for its MQTT publishers, and the rules.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::telemetry::server::{excerpt, json_body};

/// The admin Ferrule creates on first start (`spawn_ferrule` sets the
/// password).
const ADMIN_EMAIL: &str = "admin@localhost";
const ADMIN_PASSWORD: &str = "bench-password";
/// Longest wait for one setup request: the server is idle meanwhile.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An MQTT user name and password: an API key's `key:ID` and its secret.
#[derive(Debug, Clone)]
pub(super) struct Login {
    pub(super) username: String,
    pub(super) password: String,
}

/// The admin's session.
pub(super) struct Admin {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    /// Logs in as the admin; `base` is `http://HOST:PORT`.
    pub(super) async fn login(base: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("the HTTP client")?;
        let response = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .context("logging in as the admin")?;
        let body = json_body(response, "admin login").await?;
        let token = body["token"]
            .as_str()
            .context("the login response has no token")?
            .to_owned();
        Ok(Admin {
            client,
            base: base.to_owned(),
            token,
        })
    }

    /// A request as the admin, in `tenant` (`default` when `None`).
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        tenant: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        match tenant {
            Some(t) => request.header("X-Tenant", t),
            None => request,
        }
    }

    async fn post(&self, path: &str, tenant: Option<&str>, body: &Value) -> anyhow::Result<Value> {
        let what = format!("POST {path}");
        let response = self
            .request(reqwest::Method::POST, path, tenant)
            .json(body)
            .send()
            .await
            .with_context(|| what.clone())?;
        json_body(response, &what).await
    }

    pub(super) async fn create_tenant(&self, id: &str) -> anyhow::Result<()> {
        self.post("/api/v1/tenants", None, &json!({"id": id, "name": id}))
            .await
            .map(drop)
    }

    /// An editor's API key in `tenant`: its MQTT clients may publish on
    /// any topic of the tenant (a device may not, outside its own subtree).
    pub(super) async fn create_api_key(&self, tenant: &str) -> anyhow::Result<Login> {
        let body = self
            .post(
                "/api/v1/api-keys",
                Some(tenant),
                &json!({"name": "bench-rules", "role": "editor"}),
            )
            .await?;
        let id = body["id"].as_str().context("no id in the new API key")?;
        let secret = body["secret"]
            .as_str()
            .context("no secret in the new API key")?;
        Ok(Login {
            username: format!("key:{id}"),
            password: secret.to_owned(),
        })
    }

    /// Creates the `n` rules of [`bench_rule`] on `filter` in `tenant`;
    /// returns their ids.
    pub(super) async fn create_rules(
        &self,
        tenant: Option<&str>,
        filter: &str,
        n: u32,
    ) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        for i in 0..n {
            let rule = bench_rule(i, n, filter);
            self.post("/api/v1/rules", tenant, &rule)
                .await
                .with_context(|| format!("creating rule {i} ({})", rule["sql"]))?;
            ids.push(rule_id(i));
        }
        Ok(ids)
    }

    pub(super) async fn delete_rule(&self, tenant: Option<&str>, id: &str) -> anyhow::Result<()> {
        let path = format!("/api/v1/rules/{id}");
        let response = self
            .request(reqwest::Method::DELETE, &path, tenant)
            .send()
            .await
            .with_context(|| format!("DELETE {path}"))?;
        let status = response.status();
        if status != StatusCode::NO_CONTENT {
            let text = response.text().await.unwrap_or_default();
            bail!("DELETE {path}: {status}: {}", excerpt(&text));
        }
        Ok(())
    }
}

fn rule_id(i: u32) -> String {
    format!("bench-{i}")
}

/// Rule `i` of `n` on `filter`: a simple numeric filter that the messages
/// whose `seq % n = i` pass, and one republish (QoS 0) to a topic nobody
/// subscribes to, named after the publisher's topic.
pub(super) fn bench_rule(i: u32, n: u32, filter: &str) -> Value {
    let id = rule_id(i);
    json!({
        "id": id,
        "name": id,
        "sql": format!(
            "SELECT temp, topic(2) AS dev FROM '{filter}' WHERE temp > 90 AND seq % {n} = {i}"
        ),
        "actions": [{"type": "republish", "topic": "alerts/${dev}", "qos": 0}],
        "enabled": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_i_of_n_passes_its_share_of_seq_and_republishes_once() {
        let rule = bench_rule(3, 10, "bench/+/t");
        assert_eq!(rule["id"], "bench-3");
        assert_eq!(
            rule["sql"],
            "SELECT temp, topic(2) AS dev FROM 'bench/+/t' WHERE temp > 90 AND seq % 10 = 3"
        );
        let actions = rule["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0]["type"], "republish");
        assert_eq!(actions[0]["topic"], "alerts/${dev}");
        assert_eq!(actions[0]["qos"], 0);
        assert_eq!(rule["enabled"], true);
    }
}
