//! `ferrule admin reset-password EMAIL` (SPEC "Command line"): a way back
//! from a lost password, on the data directory of a stopped or a running
//! server.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::util::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Server, ServerBuilder, ferrule_bin, stamp_newer_schema,
};

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `ferrule admin ARGS…` in `cwd` with `env`, feeding `stdin`.
async fn admin_cmd(cwd: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Out {
    let mut cmd = Command::new(ferrule_bin());
    cmd.arg("admin").args(args).current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("FERRULE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn ferrule admin");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("ferrule admin did not exit")
        .unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `ferrule admin reset-password EMAIL --data-dir DATA_DIR` in `cwd`;
/// with `password_stdin`, adds `--password-stdin` and feeds it that text.
async fn reset_password(
    cwd: &Path,
    email: &str,
    data_dir: &str,
    password_stdin: Option<&str>,
) -> Out {
    let mut args = vec!["reset-password", email, "--data-dir", data_dir];
    if password_stdin.is_some() {
        args.push("--password-stdin");
    }
    admin_cmd(cwd, &args, &[], password_stdin).await
}

async fn login_status(s: &Server, email: &str, password: &str) -> u16 {
    s.anon()
        .post(
            "/api/v1/auth/login",
            serde_json::json!({"email": email, "password": password}),
        )
        .await
        .status
}

#[tokio::test]
async fn reset_password_on_a_stopped_servers_data_dir() {
    let s = Server::start().await;
    let old_session = s.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (dir, data) = s.stop_keep_dir().await;
    let data_arg = data.to_str().unwrap();

    let unknown = reset_password(dir.path(), "nobody@x.io", data_arg, None).await;
    assert_eq!(unknown.code, Some(2), "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no user") && unknown.stderr.contains("nobody@x.io"),
        "{}",
        unknown.stderr
    );
    assert!(unknown.stdout.is_empty());

    // The data dir comes from the same configuration as `serve`: here the
    // environment.
    let out = admin_cmd(
        dir.path(),
        &["reset-password", ADMIN_EMAIL],
        &[("FERRULE_DATA_DIR", data_arg)],
        None,
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "the password alone on stdout: {}",
        out.stdout
    );
    let password = lines[0].trim().to_owned();
    assert!(password.len() >= 16, "{password}");

    // The server still has FERRULE_ADMIN_PASSWORD set: ignored, with a hint.
    let s = ServerBuilder::new().data_dir(data.clone()).start().await;
    assert!(
        s.stderr().contains("FERRULE_ADMIN_PASSWORD")
            && s.stderr().contains("ferrule admin reset-password"),
        "{}",
        s.stderr()
    );
    assert_eq!(login_status(&s, ADMIN_EMAIL, &password).await, 200);
    assert_eq!(login_status(&s, ADMIN_EMAIL, ADMIN_PASSWORD).await, 401);
    s.api(&old_session)
        .get("/api/v1/devices")
        .await
        .assert_problem(401);
    let (_dir2, data) = s.stop_keep_dir().await;

    // A data dir from a newer ferrule is refused and left alone.
    stamp_newer_schema(&data);
    let out = reset_password(dir.path(), ADMIN_EMAIL, data.to_str().unwrap(), None).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("newer"), "{}", out.stderr);
    // And a directory that holds no data is not created.
    let missing = dir.path().join("missing");
    let out = reset_password(dir.path(), ADMIN_EMAIL, missing.to_str().unwrap(), None).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(!missing.exists());
}

#[tokio::test]
async fn reset_password_on_a_running_servers_data_dir() {
    let s = Server::start().await;
    let old_session = s.api(&s.login(ADMIN_EMAIL, ADMIN_PASSWORD).await);
    assert_eq!(old_session.get("/api/v1/devices").await.status, 200);
    let data = s.data_dir.to_str().unwrap().to_owned();

    let out = reset_password(s.dir.path(), ADMIN_EMAIL, &data, None).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let password = out.stdout.trim().to_owned();
    assert_eq!(login_status(&s, ADMIN_EMAIL, &password).await, 200);
    assert_eq!(login_status(&s, ADMIN_EMAIL, ADMIN_PASSWORD).await, 401);
    old_session.get("/api/v1/devices").await.assert_problem(401);

    // A chosen password from stdin, for scripts; nothing printed.
    let out = reset_password(
        s.dir.path(),
        ADMIN_EMAIL,
        &data,
        Some("chosen-password-1\n"),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(
        login_status(&s, ADMIN_EMAIL, "chosen-password-1").await,
        200
    );
    let out = reset_password(s.dir.path(), ADMIN_EMAIL, &data, Some("short\n")).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(s.stop().await.success());
}
