//! Password hashing on a small fixed pool of threads with a bounded queue.
//!
//! Each argon2id hash works in 19 MiB. Hashing on tokio's blocking pool let
//! a login flood run hundreds of hashes at once (GBs), and glibc kept most
//! of it after. Here a few dedicated threads each keep one
//! [`HashMemory`](ferrule_core::secret::HashMemory) for life, so hashing
//! memory is `workers × 19 MiB`, allocated once; at most `queue` jobs wait,
//! and a job that finds the queue full is refused at once ([`Busy`]), so
//! neither memory nor waiting grows with the flood.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use ferrule_core::secret::{self, HashMemory};
use tokio::sync::oneshot;

use super::observe;

/// The pool was full: the caller should answer "busy, retry".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is busy")]
pub struct Busy;

/// How many threads hash and how many jobs may wait for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    pub workers: usize,
    pub queue: usize,
}

enum Work {
    Hash(String),
    Verify { password: String, stored: String },
}

enum Done {
    Hash(String),
    Verify(bool),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Done>,
}

/// Where password hashes run: the bounded pool, or (limits off) tokio's
/// blocking threads as before, for comparison and the command line.
#[derive(Clone)]
pub enum Hasher {
    Pool(Arc<HashPool>),
    Blocking,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hasher::Pool(p) => f.debug_tuple("Pool").field(&p.config).finish(),
            Hasher::Blocking => f.write_str("Blocking"),
        }
    }
}

impl Hasher {
    /// The PHC string of a new password.
    pub async fn hash(&self, password: &str) -> Result<String, Busy> {
        match self {
            Hasher::Pool(pool) => match pool.run(Work::Hash(password.to_owned())).await? {
                Done::Hash(h) => Ok(h),
                Done::Verify(_) => unreachable!("a hash job answers with a hash"),
            },
            Hasher::Blocking => {
                let password = password.to_owned();
                tokio::task::spawn_blocking(move || secret::hash_password(&password))
                    .await
                    .map_err(|_| Busy)
            }
        }
    }

    /// Whether `password` matches the stored PHC string.
    pub async fn verify(&self, password: &str, stored: String) -> Result<bool, Busy> {
        let password = password.to_owned();
        match self {
            Hasher::Pool(pool) => match pool.run(Work::Verify { password, stored }).await? {
                Done::Verify(ok) => Ok(ok),
                Done::Hash(_) => unreachable!("a verify job answers with a verdict"),
            },
            Hasher::Blocking => {
                tokio::task::spawn_blocking(move || secret::verify_password(&password, &stored))
                    .await
                    .map_err(|_| Busy)
            }
        }
    }
}

/// The threads and their queue. Threads end when the pool is dropped.
pub struct HashPool {
    config: PoolConfig,
    jobs: SyncSender<Job>,
    /// Jobs sent and not yet picked up by a thread.
    waiting: Arc<AtomicUsize>,
}

impl HashPool {
    /// Starts `config.workers` threads (at least one).
    pub fn start(config: PoolConfig) -> std::io::Result<Arc<HashPool>> {
        let config = PoolConfig {
            workers: config.workers.max(1),
            ..config
        };
        // `sync_channel(queue)` holds exactly the waiting jobs; with 0 a job
        // is taken only by an idle thread.
        let (jobs, rx) = sync_channel(config.queue);
        let rx = Arc::new(Mutex::new(rx));
        let waiting = Arc::new(AtomicUsize::new(0));
        let busy = Arc::new(AtomicUsize::new(0));
        observe::pool_configured(config.workers, config.queue);
        for i in 0..config.workers {
            let (rx, waiting, busy) = (rx.clone(), waiting.clone(), busy.clone());
            std::thread::Builder::new()
                .name(format!("ferrule-hash-{i}"))
                .spawn(move || worker(&rx, &waiting, &busy))?;
        }
        Ok(Arc::new(HashPool {
            config,
            jobs,
            waiting,
        }))
    }

    pub fn config(&self) -> PoolConfig {
        self.config
    }

    /// Sets the pool's gauges again: for a metrics recorder installed after
    /// the pool started.
    pub fn publish_config(&self) {
        observe::pool_configured(self.config.workers, self.config.queue);
    }

    async fn run(&self, work: Work) -> Result<Done, Busy> {
        let (reply, done) = oneshot::channel();
        // Counted before sending so a fast thread never takes it below zero.
        let depth = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        match self.jobs.try_send(Job { work, reply }) {
            Ok(()) => observe::queue_depth(depth),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                observe::HashRefused.emit();
                return Err(Busy);
            }
        }
        // A thread always answers; a dropped caller just drops the answer.
        done.await.map_err(|_| Busy)
    }
}

fn worker(rx: &Mutex<Receiver<Job>>, waiting: &AtomicUsize, busy: &AtomicUsize) {
    let mut memory = HashMemory::default();
    loop {
        // Only one idle thread waits on the channel; the others on the lock.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        observe::queue_depth(waiting.fetch_sub(1, Ordering::SeqCst) - 1);
        // The caller gave up (its connection closed): skip the work.
        if job.reply.is_closed() {
            continue;
        }
        observe::busy_workers(busy.fetch_add(1, Ordering::SeqCst) + 1);
        let done = match job.work {
            Work::Hash(password) => Done::Hash(memory.hash_password(&password)),
            Work::Verify { password, stored } => {
                Done::Verify(memory.verify_password(&password, &stored))
            }
        };
        observe::busy_workers(busy.fetch_sub(1, Ordering::SeqCst) - 1);
        let _ = job.reply.send(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_the_rest_complete() {
        let pool = Hasher::Pool(
            HashPool::start(PoolConfig {
                workers: 1,
                queue: 1,
            })
            .unwrap(),
        );
        let stored = pool.hash("pw").await.unwrap();
        let tries = (0..6).map(|_| {
            let (pool, stored) = (pool.clone(), stored.clone());
            tokio::spawn(async move { pool.verify("pw", stored).await })
        });
        let results = futures_join(tries).await;
        let ok = results.iter().filter(|r| **r == Ok(true)).count();
        let busy = results.iter().filter(|r| **r == Err(Busy)).count();
        assert_eq!(ok + busy, 6, "{results:?}");
        assert!(ok >= 1 && busy >= 1, "{results:?}");
    }

    async fn futures_join(
        handles: impl Iterator<Item = tokio::task::JoinHandle<Result<bool, Busy>>>,
    ) -> Vec<Result<bool, Busy>> {
        let mut out = Vec::new();
        for h in handles.collect::<Vec<_>>() {
            out.push(h.await.unwrap());
        }
        out
    }
}
