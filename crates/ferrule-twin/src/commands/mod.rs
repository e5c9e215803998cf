//! Commands to devices: request/response over the router, with an outbox.
//!
//! `send` records a command as pending (durably, before a 202) and puts it
//! in its device's outbox. The [`tracker`] sends a device its outbox, in
//! order, once the device is online and subscribed to its command topic
//! (it learns both from the router: connectivity events and the subscribe
//! watch), marking each delivered. Replies arrive on
//! `devices/{id}/commands/{name}/response` (see [`reply`]) and finish the
//! command as succeeded or failed; one that outlives its TTL expires.
//! Waiters (a synchronous API call) hear the outcome at once. Changes are
//! stored by a batching [`writer`].

pub mod reply;
mod tracker;
mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferrule_bus::Router;
use ferrule_core::message::now_ms;
use ferrule_core::{DeviceId, TenantId};
use ferrule_store::commands::{CommandRecord, CommandState, CommandStore};
use ferrule_store::{Page, PageRequest};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::connectivity::Connectivity;
pub use tracker::Tracker;

/// Open (pending or delivered) commands a device may have at most.
pub const MAX_OPEN_PER_DEVICE: usize = 1000;
/// Largest command parameters, serialised.
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;
/// Longest command name (one topic level).
pub const MAX_NAME_LEN: usize = 64;

/// Changes waiting to be stored at most.
const WRITE_QUEUE: usize = 8192;
/// Replies and wake-ups waiting for the tracker at most; beyond, replies
/// are dropped and counted (their commands expire).
const EVENT_QUEUE: usize = 8192;

/// Why a command was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the command name must be 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'")]
    BadName,
    #[error("the parameters are {0} bytes, over the limit of {MAX_PARAMS_BYTES}")]
    TooLarge(usize),
    #[error(
        "the device has {MAX_OPEN_PER_DEVICE} commands waiting already; wait for them to finish or expire"
    )]
    OutboxFull,
    #[error("the command service is shutting down")]
    Closed,
}

/// A command to send.
#[derive(Debug, Clone)]
pub struct NewCommand {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub name: String,
    pub params: Value,
    /// How long it may wait for delivery and reply, in ms.
    pub ttl_ms: i64,
    pub requested_by: String,
}

/// A command just accepted.
pub struct Accepted {
    pub command: CommandRecord,
    /// Resolves with the command once it is final.
    pub outcome: oneshot::Receiver<CommandRecord>,
}

type Key = (TenantId, DeviceId);

/// Commands not final yet, and the outbox of each device.
#[derive(Default)]
struct Book {
    open: HashMap<String, Open>,
    /// Pending commands per device, by seq.
    outbox: HashMap<Key, BTreeMap<u64, String>>,
    /// (expires_at, id) of open commands.
    expiries: BTreeSet<(i64, String)>,
    /// Final but perhaps not stored yet: reads see them meanwhile.
    recent: HashMap<String, CommandRecord>,
}

struct Open {
    record: CommandRecord,
    waiters: Vec<oneshot::Sender<CommandRecord>>,
}

/// What the tracker is woken for.
enum Event {
    /// A reply from a device.
    Reply(Arc<ferrule_core::Message>),
    /// Try sending this device's outbox.
    Outbox(Key),
    /// Something in the tenant subscribed: try its devices' outboxes.
    Subscribed(TenantId),
}

/// Handle on the command tracker. Cheap to clone.
#[derive(Clone)]
pub struct Commands {
    inner: Arc<Shared>,
}

struct Shared {
    book: Mutex<Book>,
    store: Arc<dyn CommandStore>,
    router: Arc<Router>,
    connectivity: Connectivity,
    writes: mpsc::Sender<writer::Write>,
    events: mpsc::Sender<Event>,
    seq: AtomicU64,
    /// Woken when an earlier expiry is booked.
    expiry_changed: Notify,
}

impl Commands {
    /// Loads the open commands (expiring those whose time passed while
    /// stopped) and returns the handle and the tracker to run.
    pub async fn start(
        store: Arc<dyn CommandStore>,
        router: Arc<Router>,
        connectivity: Connectivity,
    ) -> ferrule_store::Result<(Commands, Tracker)> {
        let seq = store.last_command_seq().await?;
        let open = store.open_commands().await?;
        let (writes, writes_rx) = mpsc::channel(WRITE_QUEUE);
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let commands = Commands {
            inner: Arc::new(Shared {
                book: Mutex::default(),
                store: store.clone(),
                router,
                connectivity,
                writes,
                events,
                seq: AtomicU64::new(seq),
                expiry_changed: Notify::new(),
            }),
        };
        {
            let mut book = commands.inner.book.lock();
            for record in open {
                book.admit(record, None);
            }
        }
        let tracker = Tracker::new(commands.clone(), events_rx, writes_rx, store);
        Ok((commands, tracker))
    }

    /// Books the open commands of a tenant that came in whole (a tenant
    /// move) while the server runs, as [`Self::start`] does for all: they
    /// go out when their devices connect, or expire.
    pub async fn load_tenant(&self, tenant: &TenantId) -> ferrule_store::Result<()> {
        let open = self.inner.store.open_commands().await?;
        {
            let mut book = self.inner.book.lock();
            for record in open.into_iter().filter(|r| &r.tenant == tenant) {
                book.admit(record, None);
            }
        }
        self.inner.expiry_changed.notify_one();
        Ok(())
    }

    /// Accepts a command: stored durably as pending and queued for its
    /// device before this returns.
    pub async fn send(&self, new: NewCommand) -> Result<Accepted, CommandError> {
        check_name(&new.name)?;
        let size = new.params.to_string().len();
        if size > MAX_PARAMS_BYTES {
            return Err(CommandError::TooLarge(size));
        }
        let now = now_ms();
        let record = CommandRecord {
            tenant: new.tenant,
            device: new.device,
            id: command_id(),
            seq: self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1,
            name: new.name,
            params: new.params,
            state: CommandState::Pending,
            requested_by: new.requested_by,
            created_at: now,
            expires_at: now.saturating_add(new.ttl_ms),
            delivered_at: None,
            finished_at: None,
            response: None,
            error: None,
        };
        let (tell, outcome) = oneshot::channel();
        let key = (record.tenant.clone(), record.device.clone());
        {
            let mut book = self.inner.book.lock();
            let open = book.outbox.get(&key).map_or(0, BTreeMap::len);
            if open >= MAX_OPEN_PER_DEVICE {
                metrics::counter!("ferrule_commands_refused_total", "reason" => "outbox_full")
                    .increment(1);
                return Err(CommandError::OutboxFull);
            }
            book.admit(record.clone(), Some(tell));
        }
        self.inner.expiry_changed.notify_one();
        metrics::counter!("ferrule_commands_sent_total").increment(1);
        self.store_change(record.clone(), true).await?;
        self.inner
            .events
            .send(Event::Outbox(key))
            .await
            .map_err(|_| CommandError::Closed)?;
        Ok(Accepted {
            command: record,
            outcome,
        })
    }

    /// A command of the tenant, as it is now.
    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> ferrule_store::Result<Option<CommandRecord>> {
        if let Some(record) = self.inner.book.lock().current(id)
            && &record.tenant == tenant
        {
            return Ok(Some(record));
        }
        self.inner.store.get_command(tenant, id).await
    }

    /// Waits until every change queued so far is stored.
    async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        let write = writer::Write {
            record: None,
            done: Some(done),
        };
        if self.inner.writes.send(write).await.is_ok() {
            let _ = flushed.await;
        }
    }

    /// A device's commands, newest first.
    pub async fn list(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        state: Option<CommandState>,
        page: &PageRequest,
    ) -> ferrule_store::Result<Page<CommandRecord>> {
        // What changed just now (a command finished) is in the store before
        // it is filtered by state there.
        self.flush().await;
        let mut got = self
            .inner
            .store
            .list_commands(tenant, device, state, page)
            .await?;
        let book = self.inner.book.lock();
        for item in &mut got.items {
            if let Some(now) = book.current(&item.id) {
                *item = now;
            }
        }
        Ok(got)
    }

    /// Forgets a deleted device's open commands (their rows go with it);
    /// `None`: every device of the tenant.
    pub fn forget(&self, tenant: &TenantId, device: Option<&DeviceId>) {
        let mut book = self.inner.book.lock();
        let doomed: Vec<String> = book
            .open
            .values()
            .filter(|o| &o.record.tenant == tenant && device.is_none_or(|d| &o.record.device == d))
            .map(|o| o.record.id.clone())
            .collect();
        for id in doomed {
            book.take(&id);
        }
    }

    /// Queues a change for storage; `durable` waits until it is stored.
    async fn store_change(&self, record: CommandRecord, durable: bool) -> Result<(), CommandError> {
        let (done, stored) = oneshot::channel();
        self.inner
            .writes
            .send(writer::Write {
                record: Some(record),
                done: durable.then_some(done),
            })
            .await
            .map_err(|_| CommandError::Closed)?;
        if durable {
            stored.await.map_err(|_| CommandError::Closed)?;
        }
        Ok(())
    }

    /// The router's subscribe watch: a new subscription may be a device
    /// starting to listen for its commands.
    pub fn subscribe_watch(&self) -> ferrule_bus::SubscribeWatch {
        let events = self.inner.events.clone();
        Box::new(move |tenant, filter| {
            if filter.starts_with("devices/") || filter.starts_with('+') || filter.starts_with('#')
            {
                let _ = events.try_send(Event::Subscribed(tenant.clone()));
            }
        })
    }
}

impl Book {
    /// Books an open command (new, or loaded at start).
    fn admit(&mut self, record: CommandRecord, waiter: Option<oneshot::Sender<CommandRecord>>) {
        let key = (record.tenant.clone(), record.device.clone());
        if record.state == CommandState::Pending {
            self.outbox
                .entry(key)
                .or_default()
                .insert(record.seq, record.id.clone());
        }
        self.expiries.insert((record.expires_at, record.id.clone()));
        self.open.insert(
            record.id.clone(),
            Open {
                record,
                waiters: waiter.into_iter().collect(),
            },
        );
    }

    /// Removes an open command from every index.
    fn take(&mut self, id: &str) -> Option<Open> {
        let open = self.open.remove(id)?;
        let r = &open.record;
        self.expiries.remove(&(r.expires_at, r.id.clone()));
        let key = (r.tenant.clone(), r.device.clone());
        if let Some(outbox) = self.outbox.get_mut(&key) {
            outbox.remove(&r.seq);
            if outbox.is_empty() {
                self.outbox.remove(&key);
            }
        }
        Some(open)
    }

    /// The freshest copy of a command the book holds.
    fn current(&self, id: &str) -> Option<CommandRecord> {
        self.open
            .get(id)
            .map(|o| o.record.clone())
            .or_else(|| self.recent.get(id).cloned())
    }
}

/// Refuses names that are not 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn check_name(name: &str) -> Result<(), CommandError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CommandError::BadName)
    }
}

/// A command id: 128 random bits, hex.
fn command_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
