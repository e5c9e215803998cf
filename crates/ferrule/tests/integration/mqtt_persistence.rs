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

async fn mosquitto(bin: &str, addr: &str, args: &[&str]) -> String {
    let (host, port) = host_port(addr);
    let out = tokio::time::timeout(
        Duration::from_secs(15),
        Command::new(bin)
            .args(["-h", &host, "-p", &port])
            .args(args)
            .output(),
    )
    .await
    .expect("mosquitto client timed out")
    .expect("run mosquitto client (apt-get install mosquitto-clients)");
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
    // Wait past the fifth message (-W ends it) so every PUBACK has been
    // sent: asking for exactly five would disconnect right after the fifth,
    // possibly before acknowledging it, and QoS 1 would rightly resend it.
    let (host, port) = host_port(&again.mqtt);
    let out = Command::new("mosquitto_sub")
        .args(["-h", &host, "-p", &port])
        .args(keeper)
        .args(["-C", "6", "-W", "2"])
        .output()
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3", "m4"],
        "{signal}"
    );
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
    let (host, port) = host_port(&third.mqtt);
    let out = Command::new("mosquitto_sub")
        .args(["-h", &host, "-p", &port])
        .args(keeper)
        .args(["-C", "1", "-W", "2"])
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
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
    let (host, port) = host_port(&again.mqtt);
    let out = Command::new("mosquitto_sub")
        .args([
            "-h", &host, "-p", &port, "-i", "fleeting", "-c", "-q", "1", "-t", "f/#", "-C", "1",
            "-W", "2",
        ])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
    again.stop().await;
    drop(dir);
}
