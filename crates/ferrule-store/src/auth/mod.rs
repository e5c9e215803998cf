//! Limits on password logins: hashing on a bounded pool, and backoff after
//! failures. [`crate::Identity`] runs every password check through both.

pub mod hashing;
mod observe;
pub mod throttle;

pub use hashing::{Busy, HashPool, Hasher, PoolConfig};
pub use throttle::{Attempt, Scope, Throttle, ThrottleConfig, Throttled};
