//! Every way the broker says no to a client, in one place: each refusal's
//! MQTT 5 reason code (the codec maps it to a 3.1.1 return code where 3.1.1
//! has one), the reason string a v5 client reads, and the label it is counted
//! under. Like `ferrule-http`'s `ApiError`, it is the single mapping from
//! what went wrong to what the client is told.

use ferrule_bus::Refused;
use ferrule_core::TenantId;

use super::observe::{self, DeniedAccess, DropReason, RefusedReason};
use crate::codec::{ConnAck, MqttStr, ProtocolVersion, ReasonCode};

/// Why a login was refused; returned by the [`Gatekeeper`](super::Gatekeeper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 0x86 / 3.1.1 code 4.
    BadCredentials,
    /// 0x87 / 3.1.1 code 5.
    NotAuthorized,
    /// 0x88 / 3.1.1 code 3 (storage unreachable).
    Unavailable,
    /// Too many failed logins for this account or address: 0x9F
    /// (connection rate exceeded) / 3.1.1 code 5.
    Throttled { retry_after_secs: u64 },
    /// Password checking is at its bound: 0x89 (server busy) / 3.1.1 code 3.
    Busy,
}

/// Which connection limit a new connection ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionLimit {
    /// `mqtt.max_connections`, across tenants.
    Global,
    /// `mqtt.max_connections_per_tenant`.
    Tenant,
}

/// Why a CONNECT is answered with a refusing CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectRefusal {
    /// A protocol level we do not speak (MQTT 3.1.1 §3.1.2.2).
    UnsupportedProtocol,
    /// MQTT 5 enhanced authentication, which we do not offer.
    AuthMethod,
    /// The credentials did not make a principal.
    Login(Refusal),
    /// An empty client id without clean session (MQTT 3.1.1 §3.1.3.1).
    EmptyClientId,
    /// A connection limit is reached.
    Admission(ConnectionLimit),
}

impl ConnectRefusal {
    /// The Connect Reason Code.
    pub(crate) fn reason_code(self, version: ProtocolVersion) -> ReasonCode {
        match self {
            Self::UnsupportedProtocol => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            Self::AuthMethod => ReasonCode::BAD_AUTHENTICATION_METHOD,
            Self::Login(Refusal::BadCredentials) => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            Self::Login(Refusal::NotAuthorized) => ReasonCode::NOT_AUTHORIZED,
            Self::Login(Refusal::Unavailable) => ReasonCode::SERVER_UNAVAILABLE,
            // 3.1.1 has no "rate exceeded": its "not authorized" is the
            // nearest answer to "not now, for these credentials".
            Self::Login(Refusal::Throttled { .. }) if version == ProtocolVersion::V311 => {
                ReasonCode::NOT_AUTHORIZED
            }
            Self::Login(Refusal::Throttled { .. }) => ReasonCode::CONNECTION_RATE_EXCEEDED,
            Self::Login(Refusal::Busy) => ReasonCode::SERVER_BUSY,
            Self::EmptyClientId => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            Self::Admission(_) => ReasonCode::QUOTA_EXCEEDED,
        }
    }

    /// What an MQTT 5 client reads as the CONNACK's Reason String.
    pub(crate) fn reason_string(self) -> Option<String> {
        let text = match self {
            Self::UnsupportedProtocol => return None,
            Self::AuthMethod => "no enhanced authentication method is configured",
            Self::Login(Refusal::BadCredentials) => "bad user name or password",
            Self::Login(Refusal::NotAuthorized) => "credentials are required",
            Self::Login(Refusal::Unavailable) => "the identity store is unavailable; try again",
            Self::Login(Refusal::Throttled { retry_after_secs }) => {
                return Some(format!(
                    "too many failed logins; retry in {retry_after_secs} s"
                ));
            }
            Self::Login(Refusal::Busy) => "the server is busy checking passwords; retry shortly",
            Self::EmptyClientId => "an empty client id needs clean session",
            Self::Admission(_) => "connection limit reached",
        };
        Some(text.to_owned())
    }

    /// The label it is counted under in `ferrule_mqtt_refused_total`.
    pub(crate) fn observed(self) -> RefusedReason {
        match self {
            Self::UnsupportedProtocol => RefusedReason::ProtocolVersion,
            Self::AuthMethod => RefusedReason::AuthMethod,
            Self::Login(Refusal::BadCredentials) => RefusedReason::BadCredentials,
            Self::Login(Refusal::NotAuthorized) => RefusedReason::NotAuthorized,
            Self::Login(Refusal::Unavailable) => RefusedReason::Unavailable,
            Self::Login(Refusal::Throttled { .. }) => RefusedReason::Throttled,
            Self::Login(Refusal::Busy) => RefusedReason::Busy,
            Self::EmptyClientId => RefusedReason::ClientId,
            Self::Admission(ConnectionLimit::Global) => RefusedReason::MaxConnections,
            Self::Admission(ConnectionLimit::Tenant) => RefusedReason::MaxConnectionsTenant,
        }
    }

    /// The refusing CONNACK, in the client's protocol version.
    pub(crate) fn connack(self, version: ProtocolVersion) -> ConnAck {
        let mut ack = ConnAck {
            session_present: false,
            reason_code: self.reason_code(version),
            ..ConnAck::default()
        };
        if version == ProtocolVersion::V5 {
            ack.properties.reason_string = self.reason_string().and_then(|s| MqttStr::new(&s).ok());
        }
        ack
    }
}

/// Why a client's PUBLISH is refused in its PUBACK or PUBREC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublishRefusal {
    /// A `$` topic, or one the ACL does not grant.
    Denied,
    /// Declared UTF-8 (MQTT 5 §3.3.2.3.2), and it is not.
    PayloadFormatInvalid,
    /// The router's intake refused it (a telemetry topic's rules).
    Intake(Refused),
}

impl PublishRefusal {
    pub(crate) fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Denied => ReasonCode::NOT_AUTHORIZED,
            Self::PayloadFormatInvalid | Self::Intake(Refused::Invalid(_)) => {
                ReasonCode::PAYLOAD_FORMAT_INVALID
            }
            Self::Intake(Refused::UnknownDevice(_)) => ReasonCode::TOPIC_NAME_INVALID,
            Self::Intake(Refused::QuotaExceeded(_)) => ReasonCode::QUOTA_EXCEEDED,
            Self::Intake(Refused::Unavailable(_)) => ReasonCode::UNSPECIFIED_ERROR,
            Self::Intake(Refused::Forbidden(_)) => ReasonCode::NOT_AUTHORIZED,
        }
    }

    /// The Reason String: only the intake says why (which field, which
    /// device), so a device can fix its payload; an ACL denial reveals
    /// nothing.
    pub(crate) fn reason_string(&self) -> Option<String> {
        match self {
            Self::Intake(refused) => Some(refused.to_string()),
            Self::Denied | Self::PayloadFormatInvalid => None,
        }
    }

    /// Counts it: an ACL denial as denied, an invalid payload as dropped.
    /// The intake counts its own refusals.
    pub(crate) fn observe(&self, tenant: &TenantId) {
        match self {
            Self::Denied => observe::Denied {
                access: DeniedAccess::Publish,
                tenant,
                n: 1,
            }
            .emit(),
            Self::PayloadFormatInvalid => observe::MessagesDropped {
                reason: DropReason::PayloadFormatInvalid,
                n: 1,
            }
            .emit(),
            Self::Intake(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_login_is_not_authorized_in_3_1_1_and_rate_exceeded_in_5() {
        let r = ConnectRefusal::Login(Refusal::Throttled {
            retry_after_secs: 7,
        });
        assert_eq!(
            r.reason_code(ProtocolVersion::V311),
            ReasonCode::NOT_AUTHORIZED
        );
        assert_eq!(
            r.reason_code(ProtocolVersion::V5),
            ReasonCode::CONNECTION_RATE_EXCEEDED
        );
        assert_eq!(
            r.connack(ProtocolVersion::V5)
                .properties
                .reason_string
                .as_ref()
                .map(|s| s.as_str()),
            Some("too many failed logins; retry in 7 s")
        );
    }

    #[test]
    fn every_connect_refusal_has_a_3_1_1_return_code() {
        let all = [
            ConnectRefusal::UnsupportedProtocol,
            ConnectRefusal::AuthMethod,
            ConnectRefusal::Login(Refusal::BadCredentials),
            ConnectRefusal::Login(Refusal::NotAuthorized),
            ConnectRefusal::Login(Refusal::Unavailable),
            ConnectRefusal::Login(Refusal::Throttled {
                retry_after_secs: 1,
            }),
            ConnectRefusal::Login(Refusal::Busy),
            ConnectRefusal::EmptyClientId,
            ConnectRefusal::Admission(ConnectionLimit::Global),
            ConnectRefusal::Admission(ConnectionLimit::Tenant),
        ];
        for r in all {
            assert!(
                r.reason_code(ProtocolVersion::V311)
                    .to_v311_connack()
                    .is_some(),
                "{r:?}"
            );
        }
    }
}
