//! Interoperability with the mosquitto command-line clients, as a user
//! would script them: `mosquitto_sub` receives what `mosquitto_pub` sends
//! through Ferrule, logged in with a device token or DEVICE@TENANT.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::mqtt_util::{World, add_device_password};

fn mosquitto(tool: &str, addr: &str, version: &str, login: &[&str]) -> Command {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut cmd = Command::new(tool);
    cmd.args(["-h", host, "-p", port, "-V", version, "-i"])
        .arg(format!("{tool}-{}", std::process::id()))
        .args(login)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn pub_ok(addr: &str, version: &str, login: &[&str], args: &[&str]) {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        mosquitto("mosquitto_pub", addr, version, login)
            .args(args)
            .output(),
    )
    .await
    .expect("mosquitto_pub hung")
    .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} ({version}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn mosquitto_sub_receives_what_mosquitto_pub_sends() {
    let w = World::start().await;
    add_device_password(&w.admin, "pump", "device-pass-123").await;
    let token_login = ["-u", w.pump.as_str()];
    let password_login = ["-u", "pump@default", "-P", "device-pass-123"];
    let runs: [(&str, &[&str]); 4] = [
        ("mqttv5", &token_login),
        ("mqttv311", &token_login),
        ("mqttv5", &password_login),
        ("mqttv311", &password_login),
    ];
    for (i, (version, login)) in runs.into_iter().enumerate() {
        let base = format!("devices/pump/run{i}");
        // A retained message first: it also tells us when the subscriber
        // is subscribed (it arrives right after the SUBACK).
        pub_ok(
            &w.s.mqtt,
            version,
            login,
            &["-q", "1", "-r", "-t", &format!("{base}/state"), "-m", "on"],
        )
        .await;
        let mut sub = mosquitto("mosquitto_sub", &w.s.mqtt, version, login)
            .args(["-q", "2", "-C", "3", "-W", "15", "-F", "%t|%q|%r|%p", "-t"])
            .arg(format!("{base}/#"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosquitto_sub");
        let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("mosquitto_sub got no retained message")
            .expect("read")
            .expect("a line");
        assert_eq!(first, format!("{base}/state|1|1|on"), "{version}");

        pub_ok(
            &w.s.mqtt,
            version,
            login,
            &["-q", "2", "-t", &format!("{base}/a"), "-m", "two"],
        )
        .await;
        pub_ok(
            &w.s.mqtt,
            version,
            login,
            &["-q", "1", "-r", "-t", &format!("{base}/b"), "-m", "three"],
        )
        .await;
        let mut rest = Vec::new();
        while let Ok(Ok(Some(l))) =
            tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await
        {
            rest.push(l);
        }
        let status = tokio::time::timeout(Duration::from_secs(10), sub.wait())
            .await
            .expect("mosquitto_sub did not exit after 3 messages")
            .expect("wait");
        assert!(status.success(), "mosquitto_sub ({version}): {status}");
        assert_eq!(
            rest,
            [
                format!("{base}/a|2|0|two"),
                // Live messages carry RETAIN 0 (no Retain As Published).
                format!("{base}/b|1|0|three"),
            ],
            "{version}"
        );
    }
    // And a wrong login is refused in a way mosquitto_pub reports.
    let out = mosquitto(
        "mosquitto_pub",
        &w.s.mqtt,
        "mqttv5",
        &["-u", "pump@default", "-P", "nope"],
    )
    .args(["-t", "devices/pump/x", "-m", "x"])
    .output()
    .await
    .expect("run mosquitto_pub");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Bad User Name or Password"), "{err}");
}
