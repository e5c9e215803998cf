//! Telemetry settings: `PATCH` merges (a field left out is kept, `null`
//! clears it), and the disk budget a server admin sets is a ceiling the
//! tenant's owner cannot lift.

use reqwest::Method;
use serde_json::{Value, json};

use crate::mqtt_util::create_device;
use crate::telemetry_util::{history, ingest, ingest_ok, now_ms};
use crate::util::{Api, Resp, Server, tenant_with_owner};

const PATH: &str = "/api/v1/telemetry/settings";

async fn patch(api: &Api, body: Value) -> Resp {
    api.raw(
        Method::PATCH,
        PATH,
        Some((body.to_string().as_bytes(), "application/merge-patch+json")),
    )
    .await
}

async fn put(api: &Api, body: Value) -> Resp {
    api.send(Method::PUT, PATH, Some(body)).await
}

fn ok(r: Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

#[tokio::test]
async fn patch_changes_only_the_fields_it_names() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let owner = tenant_with_owner(&s, &admin, "acme").await;
    ok(put(
        &owner,
        json!({"retention_days": 30, "profiles": {"slow": 7, "fast": 1}, "disk_budget_bytes": 5_000_000}),
    )
    .await);

    // One field: the others stay (a PUT would have cleared them).
    let v = ok(patch(&owner, json!({"retention_days": 90})).await);
    assert_eq!(v["retention_days"], 90);
    assert_eq!(v["profiles"], json!({"slow": 7, "fast": 1}));
    assert_eq!(v["disk_budget_bytes"], 5_000_000);

    // Profiles merge member by member; null removes one, and clears a field.
    let v = ok(patch(
        &owner,
        json!({"profiles": {"fast": null, "new": 3}, "disk_budget_bytes": null}),
    )
    .await);
    assert_eq!(v["profiles"], json!({"slow": 7, "new": 3}));
    assert_eq!(v["disk_budget_bytes"], Value::Null);
    assert_eq!(v["retention_days"], 90);
    // Plain JSON is accepted too.
    let v = ok(owner.patch(PATH, json!({"retention_days": null})).await);
    assert_eq!(v["retention_days"], Value::Null);
    assert_eq!(v["profiles"], json!({"slow": 7, "new": 3}));

    // Checked like a PUT: bad values, unknown fields, not an object.
    let r = patch(&owner, json!({"retention_days": 0})).await;
    r.assert_problem(400);
    assert_eq!(r.json["field"], "retention_days", "{}", r.text);
    patch(&owner, json!({"retention": 3}))
        .await
        .assert_problem(400);
    patch(&owner, json!([1])).await.assert_problem(400);
    // Even clearing a field that does not exist names it.
    let r = patch(&owner, json!({"": null, "retention_days": 5})).await;
    r.assert_problem(400);
    assert_eq!(r.json["field"], "", "{}", r.text);
    // Nothing of a refused patch was applied.
    assert_eq!(
        ok(owner.get(PATH).await)["profiles"],
        json!({"slow": 7, "new": 3})
    );

    // Below the owner: no changes at all.
    let viewer = crate::telemetry_util::user_api(&s, &admin, "v@example.com", "viewer").await;
    patch(&viewer, json!({"retention_days": 1}))
        .await
        .assert_problem(403);

    // The OpenAPI document describes the PATCH.
    let doc = s.anon().get("/api/openapi.json").await.json;
    assert!(
        doc["paths"][PATH]["patch"].is_object(),
        "{}",
        doc["paths"][PATH]
    );
    s.stop().await;
}

#[tokio::test]
async fn the_admins_budget_is_a_ceiling_the_owner_cannot_lift() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let owner = tenant_with_owner(&s, &admin, "acme").await;
    let as_admin = admin.clone().with_header("X-Tenant", "acme");
    let v = ok(patch(&as_admin, json!({"disk_budget_ceiling_bytes": 100_000})).await);
    assert_eq!(v["disk_budget_ceiling_bytes"], 100_000);

    // The owner can neither lift nor remove the ceiling, with PATCH or PUT…
    for r in [
        patch(&owner, json!({"disk_budget_ceiling_bytes": 200_000})).await,
        patch(&owner, json!({"disk_budget_ceiling_bytes": null})).await,
        put(&owner, json!({"disk_budget_ceiling_bytes": 1_000_000_000})).await,
    ] {
        r.assert_problem(403);
        assert!(
            r.json["detail"].as_str().unwrap().contains("admin"),
            "{}",
            r.text
        );
    }
    // …nor set a budget above it, which says why…
    let r = patch(&owner, json!({"disk_budget_bytes": 150_000})).await;
    // 409: valid alone, it conflicts with the ceiling the tenant has now.
    r.assert_problem(409);
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("ceiling of 100000"),
        "{}",
        r.text
    );
    // …but may set a lower one, and a PUT without the ceiling keeps it.
    let v = ok(put(
        &owner,
        json!({"disk_budget_bytes": 50_000, "retention_days": 3}),
    )
    .await);
    assert_eq!(v["disk_budget_bytes"], 50_000);
    assert_eq!(v["disk_budget_ceiling_bytes"], 100_000);
    // Sending the ceiling back unchanged (a GET, edited, PUT back) is fine.
    let mut back = ok(owner.get(PATH).await);
    for k in ["disk_bytes", "server_retention_days"] {
        back.as_object_mut().unwrap().remove(k);
    }
    ok(put(&owner, back).await);

    // The ceiling is enforced even with no budget of the owner's.
    ok(patch(&owner, json!({"disk_budget_bytes": null})).await);
    ok(patch(&as_admin, json!({"disk_budget_ceiling_bytes": 2_000})).await);
    let owner_acme_device = create_device(&owner, "pump").await;
    let t0 = now_ms() - 60_000;
    let mut refused = None;
    for i in 0..200 {
        let points: Vec<String> = (0..50)
            .map(|j| json!({"ts": t0 + i * 50 + j, "values": {"x": j}}).to_string())
            .collect();
        let r = ingest(&s, &owner_acme_device, format!("[{}]", points.join(","))).await;
        if r.status != 204 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the ceiling was never enforced");
    assert_eq!(r.status, 507, "{}", r.text);

    // The admin may lift it again; the owner's data flows.
    ok(patch(&as_admin, json!({"disk_budget_ceiling_bytes": null})).await);
    ingest_ok(&s, &owner_acme_device, r#"{"y": 1}"#).await;
    assert!(
        history(&owner, "pump", "keys=y").await["y"]
            .as_array()
            .unwrap()
            .len()
            == 1
    );
    s.stop().await;
}
