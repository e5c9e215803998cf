//! The packaging files (Dockerfile, systemd units, the Kubernetes manifest,
//! the PaaS example) cannot run here — there is no container engine — so
//! these tests keep them honest instead: every setting they give is one
//! `ferrule serve` accepts (the server is started with them), the probes
//! name paths the server answers, the image's health probe works, the
//! manifest parses, and the unit and the Dockerfile pass their linters.
//! A linter that is not installed is skipped with a note, except in CI
//! (`CI=true`), where `.ci/run` installs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::util::{ServerBuilder, ferrule_bin};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether a tool is on PATH; in CI a missing one fails the test.
fn tool(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed; .ci/run installs it"
        );
        eprintln!("note: {name} is not installed; its check is skipped");
    }
    found
}

/// `NAME=VALUE` settings of the Dockerfile's ENV lines.
fn dockerfile_env() -> Vec<(String, String)> {
    read("Dockerfile")
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `Environment=NAME=VALUE` lines of a unit.
fn unit_env(path: &str) -> Vec<(String, String)> {
    read(path)
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The Kubernetes manifest's documents, as JSON (through Python's YAML
/// parser, which CI installs).
fn manifest() -> Option<Vec<Value>> {
    if !tool("python3") {
        return None;
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(repo().join("deploy/kubernetes/ferrule.yaml"))
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'yaml'") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PyYAML is not installed; .ci/run installs it"
        );
        eprintln!("note: PyYAML is not installed; the manifest's checks are skipped");
        return None;
    }
    assert!(
        out.status.success(),
        "the manifest does not parse: {stderr}"
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// `env:` of the StatefulSet's container; a value from a secret gets a
/// stand-in.
fn manifest_env(docs: &[Value]) -> Vec<(String, String)> {
    let set = kind(docs, "StatefulSet")[0];
    set["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let value = e["value"].as_str().unwrap_or("a-secret-stand-in");
            (e["name"].as_str().unwrap().to_owned(), value.to_owned())
        })
        .collect()
}

/// `[env]` of the PaaS example.
fn paas_env() -> Vec<(String, String)> {
    let text = read("deploy/paas/fly.toml");
    let mut in_env = false;
    let mut env = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_env = line == "[env]";
            continue;
        }
        if in_env && let Some((k, v)) = line.split_once('=') {
            env.push((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()));
        }
    }
    env
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn every_setting_in_the_packaging_files_is_one_serve_accepts() {
    let mut all: Vec<(&str, Vec<(String, String)>)> = vec![
        ("Dockerfile", dockerfile_env()),
        (
            "ferrule.service",
            unit_env("deploy/systemd/ferrule.service"),
        ),
        ("fly.toml", paas_env()),
    ];
    if let Some(docs) = manifest() {
        all.push(("ferrule.yaml", manifest_env(&docs)));
    }
    for (file, env) in &all {
        assert!(!env.is_empty(), "{file}: no settings found");
        // The server's settings, and $PORT.
        for (name, _) in env {
            assert!(
                name.starts_with("FERRULE_") || name == "PORT",
                "{file}: {name} is not a Ferrule setting"
            );
        }
        // Start a server with exactly these settings; addresses and the
        // data directory move to free ports and a temp dir, everything
        // else is as written. An unknown FERRULE_ name or a bad value
        // stops it with exit status 2.
        let mut builder = ServerBuilder::new().no_default_flags();
        let data = builder.dir().join("data");
        let mut seen = BTreeMap::new();
        for (name, value) in env {
            let value = match name.as_str() {
                "FERRULE_DATA_DIR" => data.to_str().unwrap().to_owned(),
                "FERRULE_HTTP_LISTEN" | "FERRULE_MQTT_LISTEN" => "127.0.0.1:0".to_owned(),
                "PORT" => free_port().to_string(),
                _ => value.clone(),
            };
            seen.insert(name.clone(), value.clone());
            builder = builder.env(name.clone(), value);
        }
        if !seen.contains_key("FERRULE_HTTP_LISTEN") && !seen.contains_key("PORT") {
            builder = builder.env("FERRULE_HTTP_LISTEN", "127.0.0.1:0");
        }
        if !seen.contains_key("FERRULE_DATA_DIR") {
            builder = builder.env("FERRULE_DATA_DIR", data.to_str().unwrap());
        }
        let server = builder.start().await;
        assert!(
            data.exists(),
            "{file}: the data directory setting was not used"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn the_image_health_probe_follows_the_configured_port() {
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains(r#"CMD ["/usr/local/bin/ferrule", "healthcheck"]"#),
        "the HEALTHCHECK runs `ferrule healthcheck`"
    );
    assert!(dockerfile.contains("VOLUME [\"/data\"]"));
    assert!(
        dockerfile.contains("USER 65532"),
        "the image runs as non-root"
    );
    let server = ServerBuilder::new().start().await;
    let port = server.http.rsplit(':').next().unwrap().to_owned();
    // As in the image: the address comes from $PORT.
    let probe = |env: Vec<(&'static str, String)>| {
        let mut cmd = Command::new(ferrule_bin());
        cmd.arg("healthcheck")
            .env_remove("FERRULE_HTTP_LISTEN")
            .current_dir(server.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    };
    let ok = probe(vec![("PORT", port.clone())]).output().await.unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = probe(vec![("FERRULE_HTTP_LISTEN", format!("0.0.0.0:{port}"))])
        .output()
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Nothing listening: unhealthy, and why.
    let free = free_port();
    let bad = probe(vec![("PORT", free.to_string())])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("unhealthy") && stderr.contains(&free.to_string()),
        "{stderr}"
    );
    // The probe is not a user-facing command.
    let help = Command::new(ferrule_bin())
        .arg("--help")
        .output()
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("healthcheck"));
}

#[tokio::test]
async fn the_kubernetes_manifest_probes_paths_the_server_answers() {
    let Some(docs) = manifest() else { return };
    let set = kind(&docs, "StatefulSet");
    assert_eq!(set.len(), 1);
    let spec = &set[0]["spec"];
    assert_eq!(spec["replicas"], 1, "one writer per data volume");
    assert_eq!(
        spec["volumeClaimTemplates"][0]["metadata"]["name"],
        spec["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"]
    );
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let ports: Vec<&str> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["http", "mqtt"]);
    // The Service routes both, to the named container ports.
    let service = kind(&docs, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "ferrule")
        .expect("a Service named ferrule");
    let targets: Vec<&str> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["targetPort"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["http", "mqtt"]);
    // The container ports are the ones the env makes it listen on.
    let env: BTreeMap<_, _> = manifest_env(&docs).into_iter().collect();
    for (name, port) in [
        ("FERRULE_HTTP_LISTEN", "http"),
        ("FERRULE_MQTT_LISTEN", "mqtt"),
    ] {
        let listen_port = env[name].rsplit(':').next().unwrap().to_owned();
        let container_port = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == port)
            .unwrap()["containerPort"]
            .to_string();
        assert_eq!(listen_port, container_port, "{name}");
    }
    // And the probed paths answer 200 on a running server.
    let server = ServerBuilder::new().start().await;
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let path = container[probe]["httpGet"]["path"].as_str().unwrap();
        let r = server.anon().get(path).await;
        assert_eq!(r.status, 200, "{probe} {path}");
    }
}

#[tokio::test]
async fn the_systemd_units_pass_systemd_analyze_verify() {
    if !tool("systemd-analyze") {
        return;
    }
    // `verify` checks that ExecStart's program exists: point the copies at
    // the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for name in [
        "ferrule.service",
        "ferrule-backup.service",
        "ferrule-backup.timer",
    ] {
        let text = read(&format!("deploy/systemd/{name}"))
            .replace("/usr/local/bin/ferrule", ferrule_bin());
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown or misspelt settings are only warnings: none may be ours.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("ferrule")).collect();
    assert!(ours.is_empty(), "{ours:#?}");
    // The hardening the unit promises.
    let unit = read("deploy/systemd/ferrule.service");
    for line in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=ferrule",
        "NoNewPrivileges=yes",
        "ExecStart=/usr/local/bin/ferrule serve",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
}

#[tokio::test]
async fn the_dockerfile_passes_hadolint() {
    if !tool("hadolint") {
        return;
    }
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("hadolint")
            .arg(repo().join("Dockerfile"))
            .output(),
    )
    .await
    .expect("hadolint finished")
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One suffix for backup files everywhere people copy commands from: the
/// timer's retention glob must match what the timer writes, and a restore
/// command from one doc must find the file another doc's command wrote.
#[test]
fn backup_files_are_named_ferrule_backup_everywhere() {
    let unit = read("deploy/systemd/ferrule-backup.service");
    let exec = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("ferrule-backup.service has no {key}"))
            .to_owned()
    };
    assert!(
        exec("ExecStart=").contains(".ferrule-backup\""),
        "the unit writes another suffix: {unit}"
    );
    assert!(
        exec("ExecStartPost=").contains("ferrule-*.ferrule-backup"),
        "the retention glob does not match what the unit writes: {unit}"
    );
    for doc in [
        "docs/BACKUP.md",
        "docs/DEPLOY.md",
        "docs/TENANT-MOVES.md",
        "README.md",
        "deploy/systemd/ferrule-backup.service",
    ] {
        let text = read(doc);
        // Names like `….backup"` or `….backup ` (not `/system/backup`).
        let odd: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.match_indices(".backup").any(|(i, _)| {
                    !l[i + ".backup".len()..].starts_with(|c: char| c.is_alphanumeric())
                })
            })
            .collect();
        assert!(odd.is_empty(), "{doc} names backups `.backup`: {odd:#?}");
    }
}
