//! MQTT over WebSocket at `/mqtt` (subprotocol `mqtt`), on the HTTP port.
//!
//! The WebSocket's binary frames are bridged to an in-memory byte pipe and
//! the other end of the pipe runs the very same MQTT connection code as TCP
//! and TLS: MQTT packets may span frames, and a frame may hold several, so the
//! broker must see a plain byte stream anyway.

use std::net::SocketAddr;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::ApiError;
use crate::state::{AppState, MqttEndpoint};

/// Bytes buffered in each direction between the socket and the broker.
const PIPE_BYTES: usize = 64 * 1024;

pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(endpoint) = state.mqtt.clone() else {
        return ApiError::Unavailable("the MQTT broker is not running".into()).into_response();
    };
    let max = endpoint.broker.max_packet_size();
    ws.protocols(["mqtt"])
        .max_message_size(max + 8)
        .on_upgrade(move |socket| bridge(socket, endpoint, peer))
}

async fn bridge(socket: WebSocket, endpoint: MqttEndpoint, peer: SocketAddr) {
    let (broker_side, ws_side) = tokio::io::duplex(PIPE_BYTES);
    let MqttEndpoint {
        broker,
        shutdown,
        tasks,
    } = endpoint;
    tasks.spawn(broker.serve(broker_side, peer, shutdown));

    let (mut from_broker, mut to_broker) = tokio::io::split(ws_side);
    let (mut ws_tx, mut ws_rx) = socket.split();
    let inbound = async move {
        while let Some(Ok(msg)) = ws_rx.next().await {
            match msg {
                Message::Binary(b) => {
                    if to_broker.write_all(&b).await.is_err() {
                        break;
                    }
                }
                // MQTT over WebSocket is binary only (MQTT 5 §6).
                Message::Text(_) | Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        let _ = to_broker.shutdown().await;
    };
    let outbound = async move {
        let mut buf = BytesMut::with_capacity(PIPE_BYTES);
        loop {
            match from_broker.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if ws_tx
                        .send(Message::Binary(buf.split().freeze()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.send(Message::Close(None)).await;
    };
    // Either side ending ends the bridge; the broker sees EOF and cleans up.
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}
