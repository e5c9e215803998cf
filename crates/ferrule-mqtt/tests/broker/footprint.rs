//! An idle connection's task must stay small: thousands of them are the
//! normal case. This guards against a large value creeping into the
//! long-lived part of the connection future (the handshake's are boxed).

use ferrule_mqtt::broker::serve_connection;

use crate::harness::TestBroker;

#[tokio::test]
async fn a_connection_task_stays_small() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let broker = TestBroker::start();
    let task = serve_connection(
        broker.broker(),
        stream,
        addr,
        ferrule_mqtt::broker::Transport::Tcp,
        tokio_util::sync::CancellationToken::new(),
    );
    let size = std::mem::size_of_val(&task);
    assert!(size <= 1536, "the connection future is {size} bytes");
}
