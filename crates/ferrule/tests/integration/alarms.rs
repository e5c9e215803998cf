//! Alarms through the API: raise by hand, list with filters, acknowledge,
//! clear, history; who may do what; the live stream sees every transition;
//! a deleted device takes its alarms along.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::mqtt_util::create_device;
use crate::util::{Api, Server, tenant_with_owner, viewer_editor_owner};

async fn raise(api: &Api, body: Value) -> Value {
    let r = api.post("/api/v1/alarms", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json
}

fn ids(r: &Value) -> Vec<u64> {
    r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect()
}

async fn listed(api: &Api, query: &str) -> Vec<u64> {
    let r = api.get(&format!("/api/v1/alarms{query}")).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    ids(&r.json)
}

#[tokio::test]
async fn alarms_are_raised_deduplicated_acknowledged_cleared_and_kept() {
    let server = Server::start().await;
    let admin = server.admin().await;
    create_device(&admin, "pump").await;
    create_device(&admin, "fan").await;
    let [viewer, editor, _owner] = viewer_editor_owner(&server, &admin).await;

    let first = raise(
        &editor,
        json!({"device": "pump", "type": "overheat", "severity": "minor", "details": {"t": 80}}),
    )
    .await;
    assert_eq!(first["transition"], json!({"transition": "raised"}));
    let a = &first["alarm"];
    let id = a["id"].as_u64().unwrap();
    assert_eq!(a["state"], "active");
    assert_eq!(a["count"], 1);
    assert_eq!(a["device"], "pump");
    assert_eq!(a["type"], "overheat");
    assert!(a["originator"].as_str().unwrap().starts_with("user:"));
    assert!(a["first_seen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(a["acknowledged_at"], Value::Null);

    // Raised again while open: the same alarm, counted and updated.
    let again = raise(
        &editor,
        json!({"device": "pump", "type": "overheat", "severity": "critical", "details": {"t": 95}}),
    )
    .await;
    assert_eq!(
        again["transition"],
        json!({"transition": "updated", "id": id})
    );
    assert_eq!(again["alarm"]["count"], 2);
    assert_eq!(again["alarm"]["severity"], "critical");
    assert_eq!(again["alarm"]["details"], json!({"t": 95}));

    let fan = raise(&editor, json!({"device": "fan", "type": "stall"})).await;
    let fan_id = fan["alarm"]["id"].as_u64().unwrap();
    assert_eq!(fan["alarm"]["severity"], "major", "the default severity");
    let site = raise(
        &editor,
        json!({"type": "site offline", "severity": "warning"}),
    )
    .await;
    let site_id = site["alarm"]["id"].as_u64().unwrap();
    assert_eq!(site["alarm"]["device"], Value::Null);

    // Listing: newest last seen first; every filter narrows it.
    assert_eq!(listed(&viewer, "").await, [site_id, fan_id, id]);
    assert_eq!(listed(&viewer, "?device=pump").await, [id]);
    assert_eq!(listed(&viewer, "?severity=critical").await, [id]);
    assert_eq!(listed(&viewer, "?type=stall").await, [fan_id]);
    assert_eq!(listed(&viewer, "?state=active&limit=1").await, [site_id]);
    assert_eq!(listed(&viewer, "?to=0").await, Vec::<u64>::new());
    assert_eq!(listed(&viewer, "?from=2000-01-01T00:00:00Z").await.len(), 3);
    let r = viewer.get("/api/v1/devices/pump/alarms").await;
    assert_eq!((r.status, ids(&r.json)), (200, vec![id]), "{}", r.text);
    let page = viewer.get("/api/v1/alarms?limit=2").await;
    let cursor = page.json["next_cursor"].as_str().unwrap();
    assert_eq!(
        listed(&viewer, &format!("?limit=2&cursor={cursor}")).await,
        [id]
    );
    viewer
        .get("/api/v1/alarms?severity=awful")
        .await
        .assert_problem(400);
    viewer
        .get("/api/v1/alarms?from=yesterday")
        .await
        .assert_problem(400);

    // A viewer reads but does not act.
    let r = viewer.get(&format!("/api/v1/alarms/{id}")).await;
    assert_eq!(r.json, again["alarm"]);
    viewer
        .post(&format!("/api/v1/alarms/{id}/ack"), json!(null))
        .await
        .assert_problem(403);
    viewer
        .post("/api/v1/alarms", json!({"type": "x"}))
        .await
        .assert_problem(403);

    let r = editor
        .post(&format!("/api/v1/alarms/{id}/ack"), json!(null))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["state"], "acknowledged");
    assert!(
        r.json["acknowledged_by"]
            .as_str()
            .unwrap()
            .starts_with("user:")
    );
    editor
        .post(&format!("/api/v1/alarms/{id}/ack"), json!(null))
        .await
        .assert_problem(409);
    let r = editor
        .post(&format!("/api/v1/alarms/{id}/clear"), json!(null))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["state"], "cleared");
    assert!(r.json["cleared_at"].is_string());
    editor
        .post(&format!("/api/v1/alarms/{id}/clear"), json!(null))
        .await
        .assert_problem(409);
    editor
        .post(&format!("/api/v1/alarms/{id}/ack"), json!(null))
        .await
        .assert_problem(409);

    // After clear, a raise is a new alarm; the cleared one is history.
    let fresh = raise(&editor, json!({"device": "pump", "type": "overheat"})).await;
    assert_eq!(fresh["transition"], json!({"transition": "raised"}));
    assert_ne!(fresh["alarm"]["id"].as_u64().unwrap(), id);
    assert_eq!(listed(&viewer, "?state=cleared").await, [id]);

    // Bad input.
    editor
        .post("/api/v1/alarms", json!({"device": "ghost", "type": "x"}))
        .await
        .assert_problem(404);
    editor
        .post("/api/v1/alarms", json!({"type": ""}))
        .await
        .assert_problem(400);
    editor
        .post("/api/v1/alarms", json!({"type": "x".repeat(129)}))
        .await
        .assert_problem(400);
    editor
        .post(
            "/api/v1/alarms",
            json!({"type": "x", "details": "y".repeat(17 * 1024)}),
        )
        .await
        .assert_problem(400);
    editor
        .post("/api/v1/alarms", json!({"type": "x", "colour": "red"}))
        .await
        .assert_problem(400);
    // A bad time is refused even beside a device id that cannot exist
    // (which alone lists nothing).
    let r = viewer.get("/api/v1/alarms?device=%2F&to=soon").await;
    r.assert_problem(400);
    assert_eq!(r.json["field"], "to", "{}", r.text);
    let none = viewer.get("/api/v1/alarms?device=%2F").await;
    assert_eq!(none.status, 200, "{}", none.text);
    assert_eq!(none.json["items"], json!([]));
    viewer.get("/api/v1/alarms/abc").await.assert_problem(404);
    viewer
        .get("/api/v1/alarms/999999")
        .await
        .assert_problem(404);

    // Another tenant sees nothing and cannot act.
    let other = tenant_with_owner(&server, &admin, "acme").await;
    other
        .get(&format!("/api/v1/alarms/{fan_id}"))
        .await
        .assert_problem(404);
    other
        .post(&format!("/api/v1/alarms/{fan_id}/ack"), json!(null))
        .await
        .assert_problem(404);
    other
        .post(&format!("/api/v1/alarms/{fan_id}/clear"), json!(null))
        .await
        .assert_problem(404);
    assert_eq!(listed(&other, "").await, Vec::<u64>::new());

    // Deleting a device deletes its alarms; the others stay.
    let r = admin.delete("/api/v1/devices/fan").await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    viewer
        .get(&format!("/api/v1/alarms/{fan_id}"))
        .await
        .assert_problem(404);
    assert!(!listed(&viewer, "").await.contains(&fan_id));
    assert!(listed(&viewer, "").await.contains(&site_id));

    let metrics = viewer.get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferrule_alarms_total{") && l.contains("event=\"acknowledged\"")),
        "{metrics}"
    );
}

type Live = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A live stream of the admin's tenant on both alarm topics.
async fn open_stream(server: &Server, admin: &Api) -> Live {
    let mut request = format!(
        "{}/api/v1/stream?filter=%24ferrule/devices/%2B/alarms",
        server.http.replacen("http", "ws", 1)
    )
    .into_client_request()
    .unwrap();
    let token = admin.token.clone().unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (mut live, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let subscribe = json!({"op": "subscribe", "filters": ["$ferrule/alarms"]});
    live.send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    // Both answers: the filter of the URL, then the one sent.
    for _ in 0..2 {
        let v = next_frame(&mut live).await;
        assert_eq!(v["type"], "subscribed", "{v}");
        assert_eq!(v["filters"][0]["granted"], true, "{v}");
    }
    live
}

async fn next_frame(live: &mut Live) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), live.next())
            .await
            .expect("a frame within 5 s")
            .expect("the stream is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The next `message` frame.
async fn next_message(live: &mut Live) -> Value {
    let v = next_frame(live).await;
    assert_eq!(v["type"], "message", "{v}");
    v
}

#[tokio::test]
async fn the_live_stream_sees_every_alarm_transition() {
    let server = Server::start().await;
    let admin = server.admin().await;
    create_device(&admin, "pump").await;
    let mut live = open_stream(&server, &admin).await;
    let raised = raise(&admin, json!({"device": "pump", "type": "overheat"})).await;
    let id = raised["alarm"]["id"].as_u64().unwrap();
    let m = next_message(&mut live).await;
    assert_eq!(m["topic"], "$ferrule/devices/pump/alarms");
    assert_eq!(m["kind"], "alarm");
    assert_eq!(m["device"], "pump");
    assert_eq!(m["payload"]["event"], "raised");
    assert_eq!(m["payload"]["alarm"], raised["alarm"]);

    raise(&admin, json!({"device": "pump", "type": "overheat"})).await;
    assert_eq!(next_message(&mut live).await["payload"]["event"], "updated");
    let r = admin
        .post(&format!("/api/v1/alarms/{id}/ack"), json!(null))
        .await;
    let m = next_message(&mut live).await;
    assert_eq!(m["payload"]["event"], "acknowledged");
    assert_eq!(m["payload"]["alarm"], r.json);
    admin
        .post(&format!("/api/v1/alarms/{id}/clear"), json!(null))
        .await;
    assert_eq!(next_message(&mut live).await["payload"]["event"], "cleared");

    raise(&admin, json!({"type": "site offline"})).await;
    let m = next_message(&mut live).await;
    assert_eq!(m["topic"], "$ferrule/alarms");
    assert_eq!(m["kind"], "alarm");
    assert_eq!(m["payload"]["event"], "raised");
}
