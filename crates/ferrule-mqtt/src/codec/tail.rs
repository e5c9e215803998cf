//! The optional "Reason Code, then Properties" tail that ends PUBACK,
//! PUBREC, PUBREL, PUBCOMP (after the Packet Identifier), DISCONNECT and
//! AUTH in MQTT 5.
//!
//! Both parts may be left out from the end: "The Reason Code and Property
//! Length can be omitted if the Reason Code is 0x00 (Success) and there are
//! no Properties" (MQTT 5 §3.4.2.1, §3.14.2.1, §3.15.2.1), and "If the
//! Remaining Length is less than 4 [2 for DISCONNECT/AUTH] there is no
//! Property Length and the value of 0 is used" (§3.4.2.2.1, §3.14.2.2.1).
//! So three forms decode; the encoder always sends the shortest one.

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::properties::{Properties, PropertyOwner};
use super::reason::ReasonCode;
use super::types::Reader;

/// Reads the tail from what is left of the packet.
pub(crate) fn decode(
    r: &mut Reader,
    owner: PropertyOwner,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let reason_code = ReasonCode(r.u8()?);
    if r.is_empty() {
        return Ok((reason_code, Properties::default()));
    }
    Ok((reason_code, Properties::decode(r, owner)?))
}

/// Wire length of the shortest form, validating the properties.
pub(crate) fn encoded_len(
    reason_code: ReasonCode,
    properties: &Properties,
    owner: PropertyOwner,
) -> Result<usize, EncodeError> {
    Ok(if !properties.is_empty() {
        1 + properties.encoded_len(owner)?
    } else if reason_code != ReasonCode::SUCCESS {
        1
    } else {
        0
    })
}

/// Writes the shortest form.
pub(crate) fn write(reason_code: ReasonCode, properties: &Properties, out: &mut BytesMut) {
    if !properties.is_empty() {
        out.put_u8(reason_code.0);
        properties.write(out);
    } else if reason_code != ReasonCode::SUCCESS {
        out.put_u8(reason_code.0);
    }
}
