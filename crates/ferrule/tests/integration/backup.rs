//! `ferrule backup`, `ferrule restore`, `POST /api/v1/system/backup`: a
//! backup taken while devices publish restores into a server whose API
//! answers as the source did at the snapshot; broken, partial, newer and
//! misdirected restores are refused with one clear line and leave nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use ferrule_mqtt::codec::ProtocolVersion;
use serde_json::{Value, json};

use crate::mqtt_util::{Raw, create_device};
use crate::rules_util::create_rule;
use crate::util::{
    ADMIN_PASSWORD, Api, Server, ServerBuilder, ferrule_bin, tenant_with_owner, viewer_editor_owner,
};

/// The first explicit timestamp a test device sends.
const BASE_TS: i64 = 1_764_000_000_000;

/// Runs `ferrule ARGS` to its end with a clean environment.
pub async fn ferrule(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(ferrule_bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("FERRULE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::null());
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("ferrule finished")
        .expect("spawn ferrule")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub async fn backup_to(data: &Path, file: &Path) {
    let out = ferrule(
        &[
            "backup",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
}

pub async fn restore_into(file: &Path, data: &Path) -> Output {
    ferrule(
        &[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    )
    .await
}

/// A refusal: exit code 2 and one line saying `why`.
fn assert_refused(out: &Output, why: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(why), "expected {why:?} in: {err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
}

/// A device that publishes `{"ts": BASE_TS + i, "values": {"n": i}}` at
/// QoS 1 until told to stop; `acked` is the last `i` the server acknowledged.
struct Publisher {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    async fn start(server: &Server, device: &str, token: &str) -> Publisher {
        let mut raw = Raw::login(
            &server.mqtt,
            ProtocolVersion::V5,
            &format!("{device}-publisher"),
            token,
            None,
        )
        .await;
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicI64::new(-1));
        let topic = format!("devices/{device}/telemetry");
        let task = {
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut i: i64 = 0;
                while !stop.load(Ordering::Acquire) {
                    let payload = json!({"ts": BASE_TS + i, "values": {"n": i}}).to_string();
                    let id = (i % 60_000 + 1) as u16;
                    let code = raw.publish1(id, &topic, payload.as_bytes()).await;
                    assert_eq!(code.0, 0, "PUBACK of point {i}");
                    acked.store(i, Ordering::Release);
                    i += 1;
                }
            })
        };
        Publisher { stop, acked, task }
    }

    async fn wait_for(&self, at_least: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.acked.load(Ordering::Acquire) < at_least {
            assert!(tokio::time::Instant::now() < deadline, "publisher stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> i64 {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("publisher ran");
        self.acked.load(Ordering::Acquire)
    }
}

/// The source's data: two tenants, users of each role, devices, a rule, a
/// dashboard, telemetry and an event.
async fn populate(s: &Server) -> (Api, String, [Api; 3]) {
    let admin = s.admin().await;
    let owner = tenant_with_owner(s, &admin, "acme").await;
    let roles = viewer_editor_owner(s, &admin).await;
    let token = create_device(&admin, "pump-1").await;
    let pump2 = create_device(&admin, "pump-2").await;
    let valve1 = create_device(&owner, "valve-1").await;
    create_rule(
        &admin,
        "hot",
        "SELECT n FROM 'devices/+/telemetry' WHERE n > 1000000",
        json!([{"type": "republish", "topic": "alerts/hot", "qos": 0}]),
    )
    .await;
    let r = owner
        .post(
            "/api/v1/dashboards",
            json!({"id": "plant", "name": "Plant"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for device_token in [pump2, valve1] {
        let device = s.api(&device_token);
        let r = device
            .post(
                "/api/v1/ingest/telemetry",
                json!([{"ts": BASE_TS, "values": {"t": 1.5, "s": "on"}},
                       {"ts": BASE_TS + 1, "values": {"t": 1.75, "ok": true}}]),
            )
            .await;
        assert!(r.status < 300, "{}", r.text);
        let r = device
            .post("/api/v1/ingest/events/boot", json!({"reason": "power"}))
            .await;
        assert!(r.status < 300, "{}", r.text);
    }
    (admin, token, roles)
}

/// Every tenant's id, as the admin lists them.
async fn tenants(admin: &Api) -> Vec<String> {
    let r = admin.get("/api/v1/tenants").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let items = r.json["items"].as_array().or(r.json.as_array()).cloned();
    let mut ids: Vec<String> = items
        .expect("a tenant list")
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A tenant's export as the API streams it (NDJSON).
async fn export_text(admin: &Api, tenant: &str) -> String {
    let r = admin
        .clone()
        .with_header("x-tenant", tenant)
        .get("/api/v1/export")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
}

/// Whether an export line is a point of `device`'s `key`.
fn is_point_of(line: &str, device: &str, key: &str) -> bool {
    let v: Value = serde_json::from_str(line).unwrap();
    v["kind"] == "telemetry" && v["device"] == device && v["key"] == key
}

/// A tenant's export, as lines grouped by series (or `events`), in order.
async fn export(admin: &Api, tenant: &str) -> BTreeMap<String, Vec<String>> {
    let mut series: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in export_text(admin, tenant).await.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let key = match v["kind"].as_str() {
            Some("telemetry") => format!("{}/{}", v["device"], v["key"]),
            _ => "events".into(),
        };
        series.entry(key).or_default().push(line.to_owned());
    }
    series
}

/// What an admin lists in a tenant, minus what changes by itself
/// (connectivity, last-seen times).
async fn listings(admin: &Api, tenant: &str) -> Value {
    let api = admin.clone().with_header("x-tenant", tenant);
    let mut out = serde_json::Map::new();
    for path in [
        "/api/v1/devices",
        "/api/v1/users",
        "/api/v1/rules",
        "/api/v1/dashboards",
        "/api/v1/api-keys",
        "/api/v1/acl-rules",
    ] {
        let r = api.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        out.insert(path.into(), strip_volatile(r.json));
    }
    Value::Object(out)
}

fn strip_volatile(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            // Connectivity is saved in the background, so a snapshot may
            // predate a connection the source has seen since.
            for k in [
                "online",
                "last_seen",
                "client_address",
                "client_id",
                "connected_at",
                "disconnected_at",
                "last_disconnect_reason",
                "protocol",
                "stats",
            ] {
                map.remove(k);
            }
            for (_, x) in map.iter_mut() {
                *x = strip_volatile(x.take());
            }
        }
        Value::Array(items) => {
            for x in items.iter_mut() {
                *x = strip_volatile(x.take());
            }
        }
        _ => {}
    }
    v
}

/// Starts a server on a restored data directory.
async fn start_on(data: &Path) -> Server {
    ServerBuilder::new().data_dir(data).start().await
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_backup_taken_while_a_device_publishes_restores_the_snapshot() {
    let s = Server::start().await;
    let (admin, token, _) = populate(&s).await;
    let publisher = Publisher::start(&s, "pump-1", &token).await;
    publisher.wait_for(100).await;
    let acked_before = publisher.acked.load(Ordering::Acquire);

    let out_dir = scratch();
    let file = out_dir.path().join("b.ferrule-backup");
    backup_to(&s.data_dir, &file).await;
    publisher.wait_for(acked_before + 50).await;
    let last = publisher.stop().await;
    // Nothing but the backup beside it: no partial file, no scratch copies.
    assert_eq!(leftovers(out_dir.path()), ["b.ferrule-backup"]);

    // Stop the world: the source's data as it is now.
    let ids = tenants(&admin).await;
    assert_eq!(ids, ["acme", "default"]);
    let mut source = BTreeMap::new();
    for t in &ids {
        source.insert(
            t.clone(),
            (export_text(&admin, t).await, listings(&admin, t).await),
        );
    }

    let restored_dir = scratch();
    let data = restored_dir.path().join("data");
    let out = restore_into(&file, &data).await;
    assert!(out.status.success(), "restore: {}", stderr(&out));
    let r = start_on(&data).await;
    let radmin = r.admin().await;
    assert_eq!(tenants(&radmin).await, ids);
    // The snapshot point: how many of the publisher's points it holds.
    // Every point acknowledged before the backup began is there; later
    // ones may be, up to the last sent.
    let restored = export_text(&radmin, "default").await;
    let n = restored
        .lines()
        .filter(|l| is_point_of(l, "pump-1", "n"))
        .count();
    assert!(
        n as i64 > acked_before,
        "{n} points restored, {acked_before} acked before"
    );
    assert!(n as i64 <= last + 1);
    for t in &ids {
        let (src_export, src_lists) = &source[t];
        let got = export_text(&radmin, t).await;
        // Events are numbered as they are committed; connectivity events
        // are committed in the background, so where the snapshot cut them
        // is read off the restored copy (the highest id it holds) — and
        // the device's boot event, acknowledged before the backup, must be
        // below that cut.
        let events = |text: &str| -> Vec<Value> {
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|v| v["kind"] == "event")
                .collect()
        };
        let restored_events = events(&got);
        assert!(
            restored_events.iter().any(|e| e["type"] == "boot"),
            "tenant {t}: the acknowledged boot event is restored"
        );
        let last_event = restored_events
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .max()
            .unwrap_or(-1);
        // The source's export as it was at the snapshot point: the same
        // bytes without what was committed since — the publisher's points
        // after its n-th and events after the cut — line order kept.
        let mut seen = 0;
        let at_snapshot: String = src_export
            .split_inclusive('\n')
            .filter(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                if v["kind"] == "event" {
                    return v["id"].as_i64().unwrap() <= last_event;
                }
                if !is_point_of(line.trim_end(), "pump-1", "n") {
                    return true;
                }
                seen += 1;
                seen <= n
            })
            .collect();
        assert!(
            got == at_snapshot,
            "tenant {t}: the restored export is not byte-identical to the source's at the \
             snapshot point ({} vs {} bytes)",
            got.len(),
            at_snapshot.len()
        );
        assert_eq!(
            &listings(&radmin, t).await,
            src_lists,
            "tenant {t} listings"
        );
    }
    r.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn the_api_streams_the_same_backup_to_admins_only() {
    let s = Server::start().await;
    let (admin, _, [viewer, editor, owner]) = populate(&s).await;
    for api in [&viewer, &editor, &owner] {
        api.post("/api/v1/system/backup", json!({}))
            .await
            .assert_problem(403);
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/system/backup", s.http))
        .bearer_auth(admin.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/zstd");
    let bytes = resp.bytes().await.unwrap();
    let dir = scratch();
    let file = dir.path().join("api.ferrule-backup");
    std::fs::write(&file, &bytes).unwrap();
    // No scratch copies left in the data directory.
    assert!(
        !leftovers(&s.data_dir)
            .iter()
            .any(|n| n.contains("snapshot")),
        "{:?}",
        leftovers(&s.data_dir)
    );

    let data = dir.path().join("data");
    let out = restore_into(&file, &data).await;
    assert!(out.status.success(), "restore: {}", stderr(&out));
    let r = start_on(&data).await;
    let radmin = r.admin().await;
    for t in tenants(&admin).await {
        assert_eq!(export(&radmin, &t).await, export(&admin, &t).await, "{t}");
        assert_eq!(
            listings(&radmin, &t).await,
            listings(&admin, &t).await,
            "{t}"
        );
    }
    r.stop().await;
    s.stop().await;
}

/// A `ferrule backup FILE` writing at most `bytes_per_sec`, so a test can
/// catch it mid-way.
fn slow_backup(data: &Path, file: &Path, bytes_per_sec: &str) -> tokio::process::Child {
    tokio::process::Command::new(ferrule_bin())
        .args(["backup", file.to_str().unwrap(), "--data-dir"])
        .arg(data)
        .env("FERRULE_TEST_BACKUP_BYTES_PER_SEC", bytes_per_sec)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until `partial` has `bytes`: the backup is streaming.
async fn wait_for_partial(partial: &Path, bytes: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0) < bytes {
        assert!(tokio::time::Instant::now() < deadline, "no partial backup");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The snapshot scratch directories in `dir`.
fn snapshot_scratch(dir: &Path) -> Vec<String> {
    leftovers(dir)
        .into_iter()
        .filter(|n| n.starts_with(".ferrule-snapshot-"))
        .collect()
}

/// SIGKILLs a slow backup into `dir` once it streams; returns the scratch
/// directory it leaves.
async fn killed_backup(data: &Path, dir: &Path, name: &str) -> String {
    let file = dir.join(name);
    let before = snapshot_scratch(dir);
    let mut child = slow_backup(data, &file, "4000");
    wait_for_partial(&dir.join(format!("{name}.partial")), 2000).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert!(!file.exists(), "a killed backup must not leave FILE");
    let mut left: Vec<String> = snapshot_scratch(dir)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(
        left.len(),
        1,
        "the killed backup's snapshot copies: {left:?}"
    );
    left.remove(0)
}

#[tokio::test]
async fn a_killed_backup_leaves_the_source_intact_and_its_partial_file_is_refused() {
    let s = Server::start().await;
    let (admin, token, _) = populate(&s).await;
    let before = export(&admin, "acme").await;
    let dir = scratch();
    // A backup that runs beside the others throughout (about 20 s): its
    // scratch copies must never be touched.
    let mut running = slow_backup(
        &s.data_dir,
        &dir.path().join("running.ferrule-backup"),
        "500",
    );
    wait_for_partial(&dir.path().join("running.ferrule-backup.partial"), 200).await;
    let live = snapshot_scratch(dir.path());
    assert_eq!(live.len(), 1, "{live:?}");

    let partial = dir.path().join("slow.ferrule-backup.partial");
    let dead = killed_backup(&s.data_dir, dir.path(), "slow.ferrule-backup").await;

    // The source serves on, its data whole.
    let publisher = Publisher::start(&s, "pump-1", &token).await;
    publisher.wait_for(5).await;
    publisher.stop().await;
    assert_eq!(export(&admin, "acme").await, before);

    let target = dir.path().join("data");
    let out = restore_into(&partial, &target).await;
    assert_refused(&out, "truncated");
    assert!(!target.exists(), "a refused restore leaves nothing");

    // The next backup into that directory removes the killed one's copies
    // — and not those of the backup still running beside it.
    let next = ferrule(
        &[
            "backup",
            dir.path().join("next.ferrule-backup").to_str().unwrap(),
            "--data-dir",
            s.data_dir.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(next.status.success(), "backup: {}", stderr(&next));
    assert_eq!(
        snapshot_scratch(dir.path()),
        live,
        "only the live scratch stays"
    );
    let logged: Vec<String> = stderr(&next)
        .lines()
        .filter(|l| l.contains("interrupted"))
        .map(str::to_owned)
        .collect();
    assert_eq!(logged.len(), 1, "{}", stderr(&next));
    assert!(logged[0].contains(&dead), "{logged:?}");
    assert!(
        running.try_wait().unwrap().is_none(),
        "the slow backup ran throughout"
    );
    // The running backup was not disturbed: it finishes, whole.
    let out = tokio::time::timeout(Duration::from_secs(120), running.wait())
        .await
        .expect("the slow backup finishes")
        .unwrap();
    assert!(out.success());
    assert!(snapshot_scratch(dir.path()).is_empty());
    let restored = dir.path().join("restored");
    let out = restore_into(&dir.path().join("running.ferrule-backup"), &restored).await;
    assert!(out.status.success(), "restore: {}", stderr(&out));

    // A server sweeps its data directory when it starts: there go the
    // copies of an API backup or import it was killed in.
    let dead = killed_backup(&s.data_dir, dir.path(), "again.ferrule-backup").await;
    let (tmp, data) = s.stop_keep_dir().await;
    std::fs::rename(dir.path().join(&dead), data.join(&dead)).unwrap();
    let r = ServerBuilder::new().data_dir(&data).start().await;
    assert!(snapshot_scratch(&data).is_empty(), "{:?}", leftovers(&data));
    let log = r.stderr() + &r.stdout();
    assert!(
        log.lines()
            .any(|l| l.contains("interrupted") && l.contains(&dead)),
        "{log}"
    );
    r.stop().await;
    drop(tmp);
}

#[tokio::test]
async fn damaged_newer_and_misdirected_restores_are_refused() {
    let s = Server::start().await;
    populate(&s).await;
    let dir = scratch();
    let file = dir.path().join("good.ferrule-backup");
    backup_to(&s.data_dir, &file).await;
    s.stop().await;
    let good = std::fs::read(&file).unwrap();

    // A flipped byte, anywhere in the data.
    for at in [good.len() / 3, good.len() / 2, good.len() - 20] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        let flipped = dir.path().join(format!("flipped-{at}"));
        std::fs::write(&flipped, &bad).unwrap();
        let target = dir.path().join(format!("target-{at}"));
        let out = restore_into(&flipped, &target).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("corrupted") || err.contains("truncated"),
            "byte {at}: {err}"
        );
        assert!(!target.exists());
    }

    // A manifest from a newer release.
    let mut manifest = ferrule_store::backup::Manifest::new(
        ferrule_store::backup::Scope::Full,
        ferrule_store::embedded::SCHEMA_VERSION,
        3,
        Default::default(),
    );
    manifest.format = ferrule_store::backup::archive::FORMAT + 1;
    manifest.ferrule_version = "99.0.0".into();
    let newer = ferrule_store::backup::ArchiveWriter::new(Vec::new(), &manifest)
        .unwrap()
        .finish()
        .unwrap();
    let newer_file = dir.path().join("newer.ferrule-backup");
    std::fs::write(&newer_file, newer).unwrap();
    let out = restore_into(&newer_file, &dir.path().join("t-newer")).await;
    assert_refused(&out, "newer release");
    assert!(stderr(&out).contains("99.0.0"));

    // A database damaged before it was backed up: every checksum matches
    // (they are those of the damaged bytes), SQLite's integrity check
    // does not.
    let whole = dir.path().join("t-whole");
    let out = restore_into(&file, &whole).await;
    assert!(out.status.success(), "restore: {}", stderr(&out));
    let meta = whole.join("meta.db");
    damage_table(&meta, "devices");
    let mut writer = ferrule_store::backup::ArchiveWriter::new(
        Vec::new(),
        &ferrule_store::backup::Manifest::new(
            ferrule_store::backup::Scope::Full,
            ferrule_store::embedded::SCHEMA_VERSION,
            0,
            Default::default(),
        ),
    )
    .unwrap();
    writer.append_file("meta.db", &meta).unwrap();
    let damaged = dir.path().join("damaged.ferrule-backup");
    std::fs::write(&damaged, writer.finish().unwrap()).unwrap();
    let target = dir.path().join("t-damaged");
    let out = restore_into(&damaged, &target).await;
    assert_refused(
        &out,
        "meta.db in the backup is damaged (SQLite's integrity check: ",
    );
    assert!(!target.exists(), "a refused restore leaves nothing");

    // Not a backup at all.
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    assert_refused(
        &restore_into(&text, &dir.path().join("t-text")).await,
        "not a Ferrule backup",
    );

    // A target with something in it.
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "mine").unwrap();
    let out = restore_into(&file, &busy).await;
    assert_refused(&out, "not empty");
    assert!(stderr(&out).contains("keep.txt"));
    assert_eq!(leftovers(&busy), ["keep.txt"]);

    // Backing up over an existing file is refused too.
    let out = ferrule(
        &[
            "backup",
            file.to_str().unwrap(),
            "--data-dir",
            s_data(&dir).to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_refused(&out, "exists");
}

/// Damages the b-tree page of `table` in the SQLite file at `path`, as a
/// bad disk would: the file still reads, SQLite cannot make sense of it.
fn damage_table(path: &Path, table: &str) {
    let (root, page_size): (usize, usize) = {
        let conn = rusqlite::Connection::open(path).unwrap();
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        let size = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        (root, size)
    };
    let mut bytes = std::fs::read(path).unwrap();
    let at = (root - 1) * page_size;
    bytes[at..at + 12].fill(0xff);
    std::fs::write(path, bytes).unwrap();
}

/// A data dir path that need not exist (the refusal comes first).
fn s_data(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("no-such-data")
}

#[tokio::test]
async fn a_restore_into_an_existing_empty_directory_works_and_keeps_passwords() {
    let s = Server::start().await;
    populate(&s).await;
    let dir = scratch();
    let file = dir.path().join("b.ferrule-backup");
    backup_to(&s.data_dir, &file).await;
    s.stop().await;
    let data = dir.path().join("empty");
    std::fs::create_dir(&data).unwrap();
    let out = restore_into(&file, &data).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(leftovers(&data), ["meta.db", "telemetry.db"]);
    let r = start_on(&data).await;
    // The admin's password came along (no new admin was created).
    let token = r.login("admin@localhost", ADMIN_PASSWORD).await;
    assert!(!token.is_empty());
    r.stop().await;
}
