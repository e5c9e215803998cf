//! Configuration precedence: defaults < ferrule.toml < FERRULE_* env < flags.

use crate::util::{Server, ServerBuilder};

/// Which of the candidate data dirs the server created.
fn created(server: &Server, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| server.dir.path().join(n).exists())
        .map(|n| n.to_string())
        .collect()
}

const NAMES: [&str; 4] = ["ferrule-data", "from-toml", "from-env", "from-flag"];

#[tokio::test]
async fn defaults_then_file_then_env_then_flags() {
    // Defaults: ./ferrule-data.
    let s = ServerBuilder::new()
        .no_default_flags()
        .arg("--http-listen")
        .arg("127.0.0.1:0")
        .start()
        .await;
    assert_eq!(created(&s, &NAMES), ["ferrule-data"]);
    assert!(s.stop().await.success());

    let toml = "data_dir = \"from-toml\"\n[http]\nlisten = \"127.0.0.1:0\"\n";
    let s = ServerBuilder::new()
        .no_default_flags()
        .config_file(toml)
        .start()
        .await;
    assert_eq!(created(&s, &NAMES), ["from-toml"]);
    s.stop().await;

    let s = ServerBuilder::new()
        .no_default_flags()
        .config_file(toml)
        .env("FERRULE_DATA_DIR", "from-env")
        .start()
        .await;
    assert_eq!(created(&s, &NAMES), ["from-env"]);
    s.stop().await;

    let s = ServerBuilder::new()
        .no_default_flags()
        .config_file(toml)
        .env("FERRULE_DATA_DIR", "from-env")
        .arg("--data-dir")
        .arg("from-flag")
        .start()
        .await;
    assert_eq!(created(&s, &NAMES), ["from-flag"]);
    s.stop().await;
}

#[tokio::test]
async fn port_env_sets_the_http_port_below_ferrule_http_listen() {
    // A free port below the ephemeral range (32768+), so that the port-0
    // listeners of tests running alongside cannot take it meanwhile.
    let port = (20_000..30_000)
        .map(|_| 20_000 + rand::random::<u16>() % 10_000)
        .find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
        .expect("a free port");
    let s = ServerBuilder::new()
        .no_default_flags()
        .env("PORT", port.to_string())
        .start()
        .await;
    assert_eq!(s.http, format!("http://0.0.0.0:{port}"));
    s.stop().await;

    let s = ServerBuilder::new()
        .no_default_flags()
        .env("PORT", port.to_string())
        .env("FERRULE_HTTP_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    assert_ne!(s.http, format!("http://0.0.0.0:{port}"));
    assert!(s.http.starts_with("http://127.0.0.1:"));
    s.stop().await;
}

#[tokio::test]
async fn body_limit_from_file_is_overridden_by_env_and_flag() {
    let body = serde_json::json!({"id": "d1", "name": "x".repeat(200)});
    // 1 KiB from the file: the 2 KiB body is refused.
    let s = ServerBuilder::new()
        .config_file("[http]\nmax_body_bytes = 1024\n")
        .start()
        .await;
    let admin = s.admin().await;
    let big = serde_json::json!({"id": "d1", "attributes": {"pad": "x".repeat(2048)}});
    admin
        .post("/api/v1/devices", big.clone())
        .await
        .assert_problem(413);
    s.stop().await;
    // Env raises it.
    let s = ServerBuilder::new()
        .config_file("[http]\nmax_body_bytes = 1024\n")
        .env("FERRULE_HTTP_MAX_BODY_BYTES", "65536")
        .start()
        .await;
    let admin = s.admin().await;
    assert_eq!(admin.post("/api/v1/devices", big.clone()).await.status, 201);
    s.stop().await;
    // A flag lowers it again.
    let s = ServerBuilder::new()
        .env("FERRULE_HTTP_MAX_BODY_BYTES", "65536")
        .arg("--http-max-body-bytes")
        .arg("1024")
        .start()
        .await;
    let admin = s.admin().await;
    admin.post("/api/v1/devices", big).await.assert_problem(413);
    assert_eq!(admin.post("/api/v1/devices", body).await.status, 201);
    s.stop().await;
}

#[tokio::test]
async fn admin_credentials_come_from_env_even_when_numeric() {
    let s = ServerBuilder::new()
        .random_admin_password()
        .env("FERRULE_ADMIN_EMAIL", "ops@example.com")
        .env("FERRULE_ADMIN_PASSWORD", "123456789012")
        .start()
        .await;
    s.login("ops@example.com", "123456789012").await;
    assert!(
        !s.stdout().contains("password"),
        "no generated password when one is configured"
    );
    s.stop().await;
}

#[tokio::test]
async fn json_log_format_writes_json_lines() {
    let s = ServerBuilder::new()
        .arg("--log-format")
        .arg("json")
        .start()
        .await;
    s.admin().await;
    let stderr = s.stderr();
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    s.stop().await;
}

/// Logs going to a pipe (journald, a container runtime, a file) carry no
/// terminal colour codes.
#[tokio::test]
async fn pretty_logs_to_a_pipe_are_plain_text() {
    let s = Server::start().await;
    s.admin().await;
    let stderr = s.stderr();
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in: {stderr:?}");
    s.stop().await;
}
