//! Graceful shutdown: stop accepting, finish in-flight work, flush the store,
//! exit 0 within 10 s — on SIGTERM and SIGINT alike.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::util::{ADMIN_EMAIL, ADMIN_PASSWORD, Server, ServerBuilder};

#[tokio::test]
async fn sigterm_and_sigint_exit_zero_promptly_and_keep_data() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let s = Server::start().await;
        let admin = s.admin().await;
        assert_eq!(
            admin
                .post("/api/v1/devices", json!({"id": "kept"}))
                .await
                .status,
            201
        );
        let started = Instant::now();
        s.signal(sig);
        let (dir, data) = {
            let mut s = s;
            let status = s.wait_exit().await;
            assert!(status.success(), "{sig}: exit {status}");
            (s.dir, s.data_dir)
        };
        assert!(started.elapsed() < Duration::from_secs(10));
        let again = ServerBuilder::new().data_dir(data).start().await;
        assert_eq!(
            again.admin().await.get("/api/v1/devices/kept").await.status,
            200,
            "{sig}"
        );
        again.stop().await;
        drop(dir);
    }
}

#[tokio::test]
async fn in_flight_requests_finish_before_exit() {
    let s = Server::start().await;
    let anon = s.anon();
    // A login spends its time hashing off the async threads: still in flight
    // when the signal lands.
    let logins: Vec<_> = (0..4)
        .map(|_| {
            let anon = anon.clone();
            tokio::spawn(async move {
                anon.post(
                    "/api/v1/auth/login",
                    json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.signal(Signal::SIGTERM);
    for l in logins {
        let r = l.await.unwrap();
        assert_eq!(r.status, 200, "in-flight login finished: {}", r.text);
    }
    let mut s = s;
    assert!(s.wait_exit().await.success());
    // And no new connections are taken after exit.
    assert!(reqwest::get(format!("{}/healthz", s.http)).await.is_err());
}
