//! An idle connection's task must stay small: thousands of them are the
//! normal case. This guards against a large value creeping into the
//! long-lived part of the connection future (the handshake's are boxed).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ferrule_core::{Principal, TenantId};
use ferrule_mqtt::broker::{
    Access, Broker, BrokerConfig, Check, Gatekeeper, Login, Refusal, serve_connection,
};

struct Nobody;

#[async_trait::async_trait]
impl Gatekeeper for Nobody {
    async fn authenticate(&self, _: Login<'_>) -> Result<Principal, Refusal> {
        Err(Refusal::NotAuthorized)
    }
    async fn prepare(&self, _: &TenantId) {}
    fn allows(&self, _: &Principal, _: Access, _: &str) -> bool {
        false
    }
    fn policy_version(&self, _: &TenantId) -> Arc<AtomicU64> {
        Arc::default()
    }
    fn check(&self, _: &Principal, _: Access) -> Check {
        Check::Nothing
    }
}

#[tokio::test]
async fn a_connection_task_stays_small() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let broker = Broker::new(
        BrokerConfig::default(),
        ferrule_bus::Router::new(),
        Arc::new(Nobody),
    );
    let task = serve_connection(
        broker,
        stream,
        addr,
        None,
        tokio_util::sync::CancellationToken::new(),
    );
    let size = std::mem::size_of_val(&task);
    assert!(size <= 1536, "the connection future is {size} bytes");
}
