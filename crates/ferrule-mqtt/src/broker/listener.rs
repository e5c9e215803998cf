//! Accepting TCP connections, with the per-source-IP connection rate limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::observe::{self, RefusedReason};
use super::{Broker, Transport, serve_connection};

/// Counts connections per source IP in one-second windows.
pub struct ConnectRate {
    windows: Mutex<(Instant, HashMap<IpAddr, u32>)>,
}

impl ConnectRate {
    /// Whether one more connection from `ip` fits within `limit` per second;
    /// one that does not is counted as refused.
    pub fn admit(&self, ip: IpAddr, limit: u32) -> bool {
        let mut guard = self.windows.lock();
        let (start, counts) = &mut *guard;
        if start.elapsed().as_secs() >= 1 {
            *start = Instant::now();
            counts.clear();
        }
        let n = counts.entry(ip).or_default();
        *n += 1;
        let admitted = *n <= limit;
        if !admitted {
            observe::ConnectionRefused {
                reason: RefusedReason::ConnectRate,
            }
            .emit();
        }
        admitted
    }
}

impl Default for ConnectRate {
    fn default() -> Self {
        Self {
            windows: Mutex::new((Instant::now(), HashMap::new())),
        }
    }
}

/// Accepts MQTT over TCP until `shutdown`; connections run on `tasks`.
pub async fn serve_tcp(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let rate = ConnectRate::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spin.
                tracing::warn!(error = %e, "accepting an MQTT connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if !rate.admit(peer.ip(), broker.config.max_connect_rate_per_ip) {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(serve_connection(
            broker,
            stream,
            peer,
            Transport::Tcp,
            shutdown,
        ));
    }
}
