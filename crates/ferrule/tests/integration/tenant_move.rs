//! Tenant moves (issue 13): `ferrule backup --tenant` from a running
//! server, `ferrule restore --tenant` into another running one (`--server`)
//! or a stopped one (`--data-dir`); the tenant's devices reconnect there
//! with their tokens, its history is there and its rules run.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::util::{Api, Server, ServerBuilder, ferrule_bin, tenant_with_owner};

const WAIT: Duration = Duration::from_secs(10);
const OWNER_EMAIL: &str = "owner@acme.example";
const OWNER_PASSWORD: &str = "owner-password";

struct Out {
    code: Option<i32>,
    stderr: String,
}

/// Runs `ferrule ARGS…` with only the `FERRULE_*` variables of `env`.
async fn ferrule(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(ferrule_bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("FERRULE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("ferrule did not exit")
        .expect("spawn ferrule");
    Out {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Tenant `acme` on `server`: device `pump-1` (its token returned), a
/// rule republishing hot readings to `alerts/{device}`, a dashboard, and
/// three points of history.
async fn acme(server: &Server) -> (Api, String) {
    let admin = server.admin().await;
    let owner = tenant_with_owner(server, &admin, "acme").await;
    let r = owner
        .post("/api/v1/devices", json!({"id": "pump-1", "name": "Pump"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = r.json["token"].as_str().unwrap().to_owned();
    let r = owner
        .post(
            "/api/v1/rules",
            json!({"id": "hot", "sql": "SELECT temp, device_id() AS device FROM 'devices/+/telemetry' WHERE temp > 30",
                   "actions": [{"type": "republish", "topic": "alerts/${device}", "qos": 1}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = owner
        .post(
            "/api/v1/dashboards",
            json!({"id": "plant", "name": "Acme plant", "widgets": []}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let device = server.api(&token);
    let r = device
        .post(
            "/api/v1/ingest/telemetry",
            json!([{"ts": 1_764_028_800_000i64, "values": {"temp": 20.5}},
                   {"ts": 1_764_028_860_000i64, "values": {"temp": 21.5}},
                   {"ts": 1_764_028_920_000i64, "values": {"temp": 22.5}}]),
        )
        .await;
    assert!(r.status / 100 == 2, "{}", r.text);
    (owner, token)
}

/// Another tenant on the source whose data must not travel with `acme`.
async fn rival(server: &Server) {
    let admin = server.admin().await;
    let owner = tenant_with_owner(server, &admin, "rival").await;
    let r = owner
        .post("/api/v1/devices", json!({"id": "rival-pump"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// `acme`'s history of `temp` on `server`, as `api` sees it.
async fn history(api: &Api) -> Vec<f64> {
    let r = api
        .get("/api/v1/devices/pump-1/telemetry?keys=temp&from=0")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["temp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect()
}

/// What a user of the moved tenant finds on `server` after the move.
async fn assert_moved(server: &Server, token: &str) {
    let owner = server.api(&server.login(OWNER_EMAIL, OWNER_PASSWORD).await);
    assert_eq!(history(&owner).await, vec![20.5, 21.5, 22.5]);
    let r = owner.get("/api/v1/dashboards/plant").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["name"], "Acme plant");
    let r = owner.get("/api/v1/rules/hot").await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The rule runs here: the device's own token, over MQTT.
    let mut watch = Watch::start(
        server,
        &format!("user:{OWNER_EMAIL}"),
        OWNER_PASSWORD,
        "alerts/#",
    )
    .await;
    mqtt_publish(
        server,
        token,
        "",
        "devices/pump-1/telemetry",
        r#"{"temp": 40}"#,
    )
    .await
    .expect("the device's token connects to the new host");
    let (topic, payload) = watch.next(WAIT).await.expect("the rule republished");
    assert_eq!(topic, "alerts/pump-1");
    let payload: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(payload, json!({"temp": 40, "device": "pump-1"}));
    assert_eq!(history(&owner).await.len(), 4, "the new point is stored");

    // Nothing of the other tenant came along.
    let admin = server.admin().await;
    let r = admin.get("/api/v1/tenants/rival").await;
    assert_eq!(r.status, 404, "{}", r.text);
}

/// `mosquitto_pub` of one QoS 1 message; `Err(stderr)` when refused.
async fn mqtt_publish(
    server: &Server,
    user: &str,
    password: &str,
    topic: &str,
    payload: &str,
) -> Result<(), String> {
    let (host, port) = server.mqtt.rsplit_once(':').unwrap();
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", host, "-p", port, "-V", "mqttv311", "-q", "1"])
        .args(["-u", user, "-t", topic, "-m", payload]);
    if !password.is_empty() {
        cmd.args(["-P", password]);
    }
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("mosquitto_pub hung")
        .expect("run mosquitto_pub");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A `mosquitto_sub` on one filter, subscribed once `start` returns.
struct Watch {
    _child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Watch {
    async fn start(server: &Server, user: &str, password: &str, filter: &str) -> Watch {
        let (host, port) = server.mqtt.rsplit_once(':').unwrap();
        let mut child = Command::new("mosquitto_sub")
            .args([
                "-h", host, "-p", port, "-V", "mqttv311", "-q", "1", "-F", "%t|%p",
            ])
            .args([
                "-u",
                user,
                "-P",
                password,
                "-t",
                filter,
                "-t",
                "ready/probe",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mosquitto_sub");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut watch = Watch {
            _child: child,
            lines,
        };
        // Subscribed once a probe published after the start comes back.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "mosquitto_sub never subscribed"
            );
            mqtt_publish(server, user, password, "ready/probe", "x")
                .await
                .expect("probe");
            if let Some((topic, _)) = watch.next(Duration::from_millis(300)).await {
                assert_eq!(topic, "ready/probe");
                break;
            }
        }
        while watch.next(Duration::from_millis(200)).await.is_some() {}
        watch
    }

    async fn next(&mut self, within: Duration) -> Option<(String, String)> {
        let line = tokio::time::timeout(within, self.lines.next_line())
            .await
            .ok()?
            .ok()??;
        let (topic, payload) = line.split_once('|')?;
        Some((topic.to_owned(), payload.to_owned()))
    }
}

async fn backup_tenant(source: &Server, tenant: &str, file: &Path) {
    let out = ferrule(
        &[
            "backup",
            "--tenant",
            tenant,
            file.to_str().unwrap(),
            "--data-dir",
            source.data_dir.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("Backed up tenant acme"),
        "{}",
        out.stderr
    );
}

async fn restore_over_api(target: &Server, file: &Path, extra: &[&str]) -> Out {
    let token = target
        .login("admin@localhost", target.admin_password.as_deref().unwrap())
        .await;
    let mut args = vec![
        "restore",
        "--tenant",
        file.to_str().unwrap(),
        "--server",
        target.http.as_str(),
    ];
    args.extend_from_slice(extra);
    ferrule(&args, &[("FERRULE_TOKEN", &token)]).await
}

#[tokio::test]
async fn a_tenant_moves_between_two_running_servers_and_keeps_working() {
    let a = Server::start().await;
    rival(&a).await;
    let (_, token) = acme(&a).await;
    let file = a.dir.path().join("acme.ferrule-backup");
    // Taken while A serves.
    backup_tenant(&a, "acme", &file).await;

    let b = Server::start().await;
    let out = restore_over_api(&b, &file, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("Imported tenant acme"),
        "{}",
        out.stderr
    );
    assert_moved(&b, &token).await;

    // Again: the id is taken.
    let out = restore_over_api(&b, &file, &[]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("tenant `acme` already exists") && out.stderr.contains("--as NEW_ID"),
        "{}",
        out.stderr
    );
    // Under another id beside it, its users and tokens would name two
    // tenants: refused, naming the first conflict.
    let out = restore_over_api(&b, &file, &["--as", "other"]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains(OWNER_EMAIL), "{}", out.stderr);
    let admin = b.admin().await;
    assert_eq!(admin.get("/api/v1/tenants/other").await.status, 404);

    // Once acme is gone from B, it comes back as `other`, and the same
    // token connects as a device of `other`.
    let r = admin.delete("/api/v1/tenants/acme").await;
    assert!(r.status / 100 == 2, "{}", r.text);
    let out = restore_over_api(&b, &file, &["--as", "other"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("Imported tenant other (from acme)"),
        "{}",
        out.stderr
    );
    mqtt_publish(
        &b,
        &token,
        "",
        "devices/pump-1/telemetry",
        r#"{"temp": 23.5}"#,
    )
    .await
    .expect("the token connects as a device of `other`");
    let as_other = admin.clone().with_header("X-Tenant", "other");
    assert_eq!(history(&as_other).await, vec![20.5, 21.5, 22.5, 23.5]);
}

#[tokio::test]
async fn a_tenant_restored_into_a_stopped_server_works_once_it_starts() {
    let a = Server::start().await;
    rival(&a).await;
    let (_, token) = acme(&a).await;
    let file = a.dir.path().join("acme.ferrule-backup");
    backup_tenant(&a, "acme", &file).await;

    let c = Server::start().await;
    // While C runs, its data directory is locked: the refusal says how.
    let data_dir = c.data_dir.to_str().unwrap().to_owned();
    let restore = [
        "restore",
        "--tenant",
        file.to_str().unwrap(),
        "--data-dir",
        &data_dir,
    ];
    let out = ferrule(&restore, &[]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("a server is running") && out.stderr.contains("--server"),
        "{}",
        out.stderr
    );
    let (dir, data) = c.stop_keep_dir().await;
    let out = ferrule(&restore, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let c = ServerBuilder::new().data_dir(&data).start().await;
    assert_moved(&c, &token).await;
    drop(dir);
}

#[tokio::test]
async fn the_import_endpoint_needs_an_admin_and_an_intact_archive() {
    let a = Server::start().await;
    let (owner, _) = acme(&a).await;
    let file = a.dir.path().join("acme.ferrule-backup");
    backup_tenant(&a, "acme", &file).await;
    let archive = std::fs::read(&file).unwrap();

    let b = Server::start().await;
    let path = "/api/v1/system/tenants/import";
    let ctype = "application/octet-stream";
    // An owner of a tenant (here A's, on its own server) is no admin.
    owner
        .raw(reqwest::Method::POST, path, Some((&archive, ctype)))
        .await
        .assert_problem(403);
    let admin_b = b.admin().await;
    let b_owner = tenant_with_owner(&b, &admin_b, "b-co").await;
    let r = b_owner
        .raw(reqwest::Method::POST, path, Some((&archive, ctype)))
        .await;
    r.assert_problem(403);
    assert_eq!(admin_b.get("/api/v1/tenants/acme").await.status, 404);

    // One flipped byte: refused, nothing imported.
    let mut tampered = archive.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x20;
    let r = admin_b
        .raw(reqwest::Method::POST, path, Some((&tampered, ctype)))
        .await;
    r.assert_problem(400);
    assert!(
        r.json["detail"].as_str().unwrap().contains("backup"),
        "{}",
        r.text
    );
    assert_eq!(admin_b.get("/api/v1/tenants/acme").await.status, 404);
    // A truncated one too.
    let r = admin_b
        .raw(
            reqwest::Method::POST,
            path,
            Some((&archive[..archive.len() - 100], ctype)),
        )
        .await;
    r.assert_problem(400);
    assert_eq!(admin_b.get("/api/v1/tenants/acme").await.status, 404);
    // A bad new id names the parameter.
    let r = admin_b
        .raw(
            reqwest::Method::POST,
            &format!("{path}?as=no%20spaces"),
            Some((&archive, ctype)),
        )
        .await;
    r.assert_problem(400);
    assert!(r.text.contains("as"), "{}", r.text);

    // The intact archive: 201 with what came in.
    let r = admin_b
        .raw(reqwest::Method::POST, path, Some((&archive, ctype)))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["tenant"], "acme");
    assert_eq!(r.json["rows"]["devices"], 1);
    assert_eq!(r.json["rows"]["rules"], 1);
    assert_eq!(r.json["rows"]["dashboards"], 1);
    assert_eq!(r.json["points"], 3);
    let r = admin_b
        .raw(reqwest::Method::POST, path, Some((&archive, ctype)))
        .await;
    r.assert_problem(409);
}

/// Runs `mosquitto_pub` or `mosquitto_sub` as `acme`'s owner with `args`
/// (MQTT 3.1.1, QoS 1); returns stdout.
async fn mosquitto_as_owner(server: &Server, program: &str, args: &[&str]) -> String {
    let (host, port) = server.mqtt.rsplit_once(':').unwrap();
    let user = format!("user:{OWNER_EMAIL}");
    let out = tokio::time::timeout(
        WAIT + WAIT,
        Command::new(program)
            .args(["-h", host, "-p", port, "-V", "mqttv311", "-q", "1"])
            .args(["-u", &user, "-P", OWNER_PASSWORD])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{program} hung"))
    .unwrap_or_else(|e| panic!("run {program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the broker, which writes its state in the background, has
/// stored `acme`'s session, its queued message and the retained message,
/// so that a backup taken now holds them.
async fn broker_state_written(server: &Server) {
    let db = rusqlite::Connection::open(server.data_dir.join("meta.db")).unwrap();
    let count = |table: &str| -> i64 {
        db.query_row(
            &format!("SELECT count(*) FROM {table} WHERE tenant = 'acme'"),
            [],
            |r| r.get(0),
        )
        .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while ["mqtt_sessions", "mqtt_session_messages", "mqtt_retained"]
        .iter()
        .any(|t| count(t) == 0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker never stored acme's MQTT state"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_running_import_target_serves_retained_messages_and_sessions_at_once() {
    let a = Server::start().await;
    acme(&a).await;
    let pub_ = "mosquitto_pub";
    let sub = "mosquitto_sub";
    // A retained message, and a persistent session subscribed to
    // `orders/#` that is away while an order comes in.
    mosquitto_as_owner(&a, pub_, &["-r", "-t", "plant/status", "-m", "online"]).await;
    mosquitto_as_owner(&a, sub, &["-c", "-i", "acme-desk", "-t", "orders/#", "-E"]).await;
    mosquitto_as_owner(&a, pub_, &["-t", "orders/1", "-m", "queued while away"]).await;
    broker_state_written(&a).await;
    let file = a.dir.path().join("acme.ferrule-backup");
    backup_tenant(&a, "acme", &file).await;

    let b = Server::start().await;
    let out = restore_over_api(&b, &file, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // No restart: a new subscriber gets the retained message at once…
    let got = mosquitto_as_owner(
        &b,
        sub,
        &["-t", "plant/#", "-C", "1", "-W", "5", "-F", "%t|%p|%r"],
    )
    .await;
    assert_eq!(got.trim(), "plant/status|online|1", "retained message on B");
    // …and the session resumes: the order queued on A arrives, and its
    // subscription (not made again here) gets the next one.
    let mut desk = Command::new(sub)
        .args({
            let (host, port) = b.mqtt.rsplit_once(':').unwrap();
            vec![
                "-h".to_owned(),
                host.to_owned(),
                "-p".to_owned(),
                port.to_owned(),
            ]
        })
        .args(["-V", "mqttv311", "-q", "1", "-c", "-i", "acme-desk"])
        .args(["-u", &format!("user:{OWNER_EMAIL}"), "-P", OWNER_PASSWORD])
        .args([
            "-t",
            "unrelated/topic",
            "-F",
            "%t|%p",
            "-C",
            "2",
            "-W",
            "10",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(desk.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the queued order arrives")
        .unwrap();
    assert_eq!(first.as_deref(), Some("orders/1|queued while away"));
    mosquitto_as_owner(&b, pub_, &["-t", "orders/2", "-m", "after the move"]).await;
    let second = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the restored subscription delivers")
        .unwrap();
    assert_eq!(second.as_deref(), Some("orders/2|after the move"));
    desk.wait().await.unwrap();
}

/// Sends a tenant import's request head over a raw connection to `server`.
async fn import_head(server: &Server, token: &str, len: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = server.http.trim_start_matches("http://");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/system/tenants/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c
}

/// The status code of the response on `c`.
async fn status_of(c: &mut (impl tokio::io::AsyncRead + Unpin)) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, c.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        assert!(n > 0, "closed without a response");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got);
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_slow_but_steady_import_outlasts_the_body_timeout_and_a_stalled_one_gets_408() {
    use tokio::io::AsyncWriteExt;
    let a = Server::start().await;
    acme(&a).await;
    let file = a.dir.path().join("acme.ferrule-backup");
    backup_tenant(&a, "acme", &file).await;
    let archive = std::fs::read(&file).unwrap();

    let b = ServerBuilder::new()
        .env("FERRULE_HTTP_BODY_TIMEOUT", "1s")
        .start()
        .await;
    let admin = b.admin().await;
    let token = admin.token.clone().unwrap();
    let piece = archive.len().div_ceil(8);

    // Stalled half way for longer than the timeout: 408, nothing imported.
    let mut c = import_head(&b, &token, archive.len()).await;
    c.write_all(&archive[..archive.len() / 2]).await.unwrap();
    let stalled = tokio::time::Instant::now();
    assert_eq!(status_of(&mut c).await, 408);
    assert!(stalled.elapsed() < Duration::from_secs(4));
    assert_eq!(admin.get("/api/v1/tenants/acme").await.status, 404);

    // Elsewhere the deadline is whole: a body that keeps coming, slowly,
    // is still cut.
    let mut c = tokio::net::TcpStream::connect(b.http.trim_start_matches("http://"))
        .await
        .unwrap();
    let body = format!(
        r#"{{"email":"admin@localhost","password":"{}"}}"#,
        b.admin_password.as_deref().unwrap()
    );
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = c.split();
    let dripping = async {
        for byte in body.as_bytes() {
            if wr.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        std::future::pending::<()>().await;
    };
    // Read while dripping: the answer comes before the body is whole.
    tokio::select! {
        status = status_of(&mut rd) => assert_eq!(status, 408),
        () = dripping => unreachable!(),
    }

    // The archive in eight pieces, 400 ms apart: about three times the
    // timeout in all, never more than it between two pieces.
    let mut c = import_head(&b, &token, archive.len()).await;
    let started = tokio::time::Instant::now();
    for chunk in archive.chunks(piece) {
        c.write_all(chunk)
            .await
            .expect("the server keeps reading an upload that keeps coming");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(started.elapsed() > Duration::from_secs(2));
    assert_eq!(status_of(&mut c).await, 201);
    assert_eq!(admin.get("/api/v1/tenants/acme").await.status, 200);
}
