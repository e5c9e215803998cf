//! Persistent sessions and retained messages survive a broker restart —
//! graceful or `kill -9` — tried with the mosquitto command-line clients.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Command;

use crate::util::ServerBuilder;

fn host_port(addr: &str) -> (String, String) {
    let (h, p) = addr.rsplit_once(':').unwrap();
    (h.to_owned(), p.to_owned())
}

/// Runs a mosquitto command-line client against `addr`.
pub(crate) async fn mosquitto_run(bin: &str, addr: &str, args: &[&str]) -> std::process::Output {
    let (host, port) = host_port(addr);
    tokio::time::timeout(
        Duration::from_secs(15),
        Command::new(bin)
            .args(["-h", &host, "-p", &port])
            .args(args)
            .output(),
    )
    .await
    .expect("mosquitto client timed out")
    .expect("run mosquitto client (apt-get install mosquitto-clients)")
}

/// Runs a client that must succeed; its standard output.
pub(crate) async fn mosquitto(bin: &str, addr: &str, args: &[&str]) -> String {
    let out = mosquitto_run(bin, addr, args).await;
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a subscriber receives until the broker has been quiet for `secs`
/// (`-W` ends it, so every PUBACK has been sent before it leaves).
pub(crate) async fn received_until_quiet(addr: &str, args: &[&str], secs: u32) -> Vec<String> {
    let secs = secs.to_string();
    let out = mosquitto_run(
        "mosquitto_sub",
        addr,
        &[args, &["-C", "1000", "-W", &secs]].concat(),
    )
    .await;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn restart_keeps_sessions(signal: Signal) {
    let s = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .start()
        .await;
    // A persistent subscriber (session expiry 1 h) subscribes, then leaves.
    let keeper = [
        "-V", "mqttv5", "-i", "keeper", "-c", "-x", "3600", "-q", "1", "-t", "p/#",
    ];
    mosquitto("mosquitto_sub", &s.mqtt, &[&keeper[..], &["-E"]].concat()).await;
    // While it is away, QoS 1 messages arrive for it, and a retained one.
    for i in 0..5 {
        mosquitto(
            "mosquitto_pub",
            &s.mqtt,
            &["-q", "1", "-t", "p/x", "-m", &format!("m{i}")],
        )
        .await;
    }
    mosquitto(
        "mosquitto_pub",
        &s.mqtt,
        &["-q", "1", "-r", "-t", "r/state", "-m", "kept"],
    )
    .await;
    // Give the state writer its batch window, then stop the server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.signal(signal);
    let mut s = s;
    s.wait_exit().await;
    let (dir, data) = (s.dir, s.data_dir);

    let again = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .data_dir(data)
        .start()
        .await;
    // Asking for exactly five would disconnect right after the fifth,
    // possibly before acknowledging it, and QoS 1 would rightly resend it.
    let got = received_until_quiet(&again.mqtt, &keeper, 2).await;
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"], "{signal}");
    let retained = mosquitto(
        "mosquitto_sub",
        &again.mqtt,
        &["-t", "r/#", "-C", "1", "-W", "5"],
    )
    .await;
    assert_eq!(retained.trim(), "kept", "{signal}");
    // Delivered and acknowledged: gone after another restart.
    let (dir2, data2) = again.stop_keep_dir().await;
    let third = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .data_dir(data2)
        .start()
        .await;
    assert!(
        received_until_quiet(&third.mqtt, &keeper, 2)
            .await
            .is_empty(),
        "nothing is delivered twice"
    );
    third.stop().await;
    drop((dir, dir2));
}

#[tokio::test]
async fn sessions_and_retained_survive_a_graceful_restart() {
    restart_keeps_sessions(Signal::SIGTERM).await;
}

#[tokio::test]
async fn sessions_and_retained_survive_kill_9() {
    restart_keeps_sessions(Signal::SIGKILL).await;
}

#[tokio::test]
async fn a_clean_session_leaves_nothing_behind() {
    let s = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .start()
        .await;
    mosquitto(
        "mosquitto_sub",
        &s.mqtt,
        &["-i", "fleeting", "-q", "1", "-t", "f/#", "-E"],
    )
    .await;
    mosquitto(
        "mosquitto_pub",
        &s.mqtt,
        &["-q", "1", "-t", "f/x", "-m", "lost"],
    )
    .await;
    let (dir, data) = s.stop_keep_dir().await;
    let again = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .data_dir(data)
        .start()
        .await;
    let resumed = ["-i", "fleeting", "-c", "-q", "1", "-t", "f/#"];
    assert!(
        received_until_quiet(&again.mqtt, &resumed, 2)
            .await
            .is_empty()
    );
    again.stop().await;
    drop(dir);
}

/// A PUBACK for a message kept for an offline session means it is on disk:
/// the broker is killed the instant each PUBACK arrives, and every
/// acknowledged message is there after the restart.
#[tokio::test]
async fn an_acknowledged_message_for_an_offline_session_survives_kill_9() {
    let keeper = [
        "-V", "mqttv5", "-i", "durable", "-c", "-x", "3600", "-q", "1", "-t", "d/#",
    ];
    let mut s = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .start()
        .await;
    mosquitto("mosquitto_sub", &s.mqtt, &[&keeper[..], &["-E"]].concat()).await;
    let data = s.data_dir.clone();
    let mut dirs = Vec::new();
    let mut sent = Vec::new();
    for i in 0..3 {
        let m = format!("m{i}");
        // mosquitto_pub -q 1 exits once the PUBACK is in; kill at once.
        mosquitto(
            "mosquitto_pub",
            &s.mqtt,
            &["-q", "1", "-t", "d/x", "-m", &m],
        )
        .await;
        s.signal(Signal::SIGKILL);
        s.wait_exit().await;
        sent.push(m);
        dirs.push(s.dir);
        s = ServerBuilder::new()
            .arg("--mqtt-allow-anonymous")
            .data_dir(data.clone())
            .start()
            .await;
    }
    assert_eq!(received_until_quiet(&s.mqtt, &keeper, 2).await, sent);
    s.stop().await;
    drop(dirs);
}

/// A stored session or retained message the broker cannot decode (a file
/// damaged, edited by hand, or a crafted tenant archive) costs that row,
/// not the server's start: the rest loads, the row is named and counted.
#[tokio::test]
async fn an_unreadable_stored_row_is_skipped_and_the_server_starts() {
    let s = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .start()
        .await;
    mosquitto(
        "mosquitto_pub",
        &s.mqtt,
        &["-q", "1", "-r", "-t", "r/ok", "-m", "kept"],
    )
    .await;
    let (dir, data) = s.stop_keep_dir().await;
    let conn = rusqlite::Connection::open(data.join("meta.db")).unwrap();
    conn.execute_batch(
        "INSERT INTO mqtt_sessions (tenant, owner, client_id, expires_at, expiry_secs, subscriptions, inbound_qos2)
             VALUES ('default', 'anonymous', 'broken', 9999999999999, 3600, 'not json', '[]');
         INSERT INTO mqtt_retained (tenant, topic, payload, qos, properties, expires_at, origin_client, received_at)
             VALUES ('default', 'r/bad', x'00', 7, NULL, NULL, NULL, 0);",
    )
    .unwrap();
    drop(conn);

    let again = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .data_dir(data)
        .start()
        .await;
    let got = mosquitto(
        "mosquitto_sub",
        &again.mqtt,
        &["-t", "r/#", "-C", "1", "-W", "5", "-v"],
    )
    .await;
    assert_eq!(got.trim(), "r/ok kept");
    let metrics = again.anon().get("/metrics").await.text;
    for table in ["mqtt_sessions", "mqtt_retained"] {
        let line = format!("ferrule_store_unreadable_rows_total{{table=\"{table}\"}} 1");
        assert!(metrics.contains(&line), "{line} missing");
    }
    let log = again.stderr();
    assert!(log.contains("client broken"), "{log}");
    assert!(log.contains("topic r/bad"), "{log}");
    again.stop().await;
    drop(dir);
}
