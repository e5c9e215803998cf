//! Connect and disconnect events of devices, as the broker publishes them
//! on `$ferrule/devices/{id}/connectivity` (JSON) and as the connectivity
//! tracker, the command outbox, rules and live streams read them.

use serde::{Deserialize, Serialize};

use crate::DeviceId;

/// `$ferrule/devices/{id}/connectivity`, where the broker publishes a
/// device's events (the broker cannot name `ferrule_twin::topics`).
pub fn topic(device: &DeviceId) -> String {
    format!("$ferrule/devices/{device}/connectivity")
}

/// One connect or disconnect of a device's MQTT client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectivityEvent {
    pub device: String,
    pub event: ConnectivityChange,
    /// When it happened, ms since the Unix epoch.
    pub ts: i64,
    pub client_id: String,
    /// The client's address, `IP:PORT`.
    pub address: String,
    /// `3.1.1` or `5.0`.
    pub protocol: String,
    /// Why the connection ended (disconnects only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DisconnectReason>,
    /// When the client was last heard from (disconnects only): for a keep
    /// alive timeout, well before `ts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
}

impl ConnectivityEvent {
    /// The event as the JSON payload of its message.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and numbers: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectivityChange {
    Connected,
    Disconnected,
}

/// Why a device's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    /// The client sent DISCONNECT.
    ClientDisconnect,
    /// Nothing arrived within 1.5 × its keep alive.
    #[serde(rename = "keepalive_timeout")]
    KeepAliveTimeout,
    /// Another connection with the same client id took the session over.
    Takeover,
    /// Its credentials were revoked, or it was disabled or deleted.
    Revoked,
    /// The server is shutting down.
    ServerShutdown,
    /// The network connection broke without DISCONNECT.
    ConnectionLost,
    /// The client broke the protocol (or sent more than it may).
    ProtocolError,
}

impl ConnectivityChange {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectivityChange::Connected => "connected",
            ConnectivityChange::Disconnected => "disconnected",
        }
    }
}

impl DisconnectReason {
    /// Every reason, for tests and documentation.
    pub const ALL: [DisconnectReason; 7] = [
        DisconnectReason::ClientDisconnect,
        DisconnectReason::KeepAliveTimeout,
        DisconnectReason::Takeover,
        DisconnectReason::Revoked,
        DisconnectReason::ServerShutdown,
        DisconnectReason::ConnectionLost,
        DisconnectReason::ProtocolError,
    ];

    /// The reason named by [`Self::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientDisconnect => "client_disconnect",
            DisconnectReason::KeepAliveTimeout => "keepalive_timeout",
            DisconnectReason::Takeover => "takeover",
            DisconnectReason::Revoked => "revoked",
            DisconnectReason::ServerShutdown => "server_shutdown",
            DisconnectReason::ConnectionLost => "connection_lost",
            DisconnectReason::ProtocolError => "protocol_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_as_written() {
        let e = ConnectivityEvent {
            device: "pump-1".into(),
            event: ConnectivityChange::Disconnected,
            ts: 2,
            client_id: "c".into(),
            address: "127.0.0.1:5".into(),
            protocol: "5.0".into(),
            reason: Some(DisconnectReason::KeepAliveTimeout),
            last_seen: Some(1),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""reason":"keepalive_timeout""#), "{json}");
        assert_eq!(serde_json::from_str::<ConnectivityEvent>(&json).unwrap(), e);
    }

    #[test]
    fn every_reason_is_written_by_its_name() {
        for r in DisconnectReason::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(DisconnectReason::parse(r.as_str()), Some(r));
        }
    }
}
