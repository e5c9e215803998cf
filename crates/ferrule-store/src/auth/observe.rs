//! The hashing pool's metrics: what it is sized for, how full it is, and
//! what it refused.

use metrics::{counter, gauge};

pub const HASH_WORKERS: &str = "ferrule_auth_hash_workers";
pub const HASH_QUEUE_CAPACITY: &str = "ferrule_auth_hash_queue_capacity";
pub const HASH_QUEUED: &str = "ferrule_auth_hash_queued";
pub const HASH_BUSY: &str = "ferrule_auth_hash_busy_workers";
pub const HASH_REFUSED: &str = "ferrule_auth_hash_refused_total";

pub fn pool_configured(workers: usize, queue: usize) {
    gauge!(HASH_WORKERS).set(workers as f64);
    gauge!(HASH_QUEUE_CAPACITY).set(queue as f64);
    gauge!(HASH_QUEUED).set(0.0);
    gauge!(HASH_BUSY).set(0.0);
    counter!(HASH_REFUSED).absolute(0);
}

pub fn queue_depth(n: usize) {
    gauge!(HASH_QUEUED).set(n as f64);
}

pub fn busy_workers(n: usize) {
    gauge!(HASH_BUSY).set(n as f64);
}

/// A password check or hash found the queue full and was refused.
pub struct HashRefused;

impl HashRefused {
    pub fn emit(self) {
        counter!(HASH_REFUSED).increment(1);
        tracing::debug!("password hashing queue full: refused a login (auth.hash_queue)");
    }
}
