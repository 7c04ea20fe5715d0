//! The two MQTT versions the broker speaks, 3.1.1 and 5, on rumqttc's codecs.
//!
//! A session works on MQTT 3.1.1 packets (`rumqttc::mqttbytes::v4`); an MQTT 5 connection's
//! packets are converted on the way in, and what the session sends is encoded for the
//! connection's version on the way out. MQTT 5 gains what it adds where it helps here:
//!
//! - a reason code, with a reason string, on the PUBACK (or PUBREC) of a refused create, and
//!   on the SUBACK of a refused subscription, where MQTT 3.1.1 can say only "failure" or
//!   nothing;
//! - the client's Receive Maximum (QoS 1 notifications in flight) and Maximum Packet Size
//!   (larger notifications are dropped and counted, as MQTT 5 requires);
//! - CONNACK properties telling the client what the broker does not do: topic aliases,
//!   retained messages, shared subscriptions, subscription identifiers, kept sessions.
//!
//! Properties the broker has no use for (user properties, content types, …) are ignored.

use bytes::{Buf as _, Bytes, BytesMut};
use rumqttc::mqttbytes::{QoS, v4};
use rumqttc::v5::mqttbytes::{QoS as QoS5, v5};

use crate::ingest::Rejection;

/// Largest packet the broker writes (a notification of a big entity).
const MAX_OUTGOING_PACKET: usize = 256 * 1024 * 1024;

/// Longest reason string sent back: enough to name the problem, small next to any packet.
const MAX_REASON: usize = 512;

/// The MQTT version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5, with the client's Maximum Packet Size, if it set one, and whether it takes
    /// reason strings on acknowledgements (Request Problem Information, 1 unless it says 0).
    V5 { max_packet: Option<u32>, reasons: bool },
}

/// Why the broker refused a message or a subscription, as MQTT 5 reason codes tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusalKind {
    /// Not a topic the broker creates on (PUBLISH) or serves (SUBSCRIBE).
    TopicInvalid,
    /// The payload is not an Observation as JSON.
    PayloadInvalid,
    NotAuthorized,
    /// Well-formed, but refused by the write path (an unknown Datastream, a bad value, …).
    Refused,
    /// The server failed.
    Internal,
}

/// A refusal and its reason, for the client.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

impl Refusal {
    pub fn of(rejection: &Rejection) -> Refusal {
        let kind = match rejection {
            Rejection::Topic(_) => RefusalKind::TopicInvalid,
            Rejection::Payload(_) => RefusalKind::PayloadInvalid,
            Rejection::Refused(_) => RefusalKind::Refused,
            Rejection::NotAuthorized => RefusalKind::NotAuthorized,
            Rejection::Internal(_) => RefusalKind::Internal,
        };
        let mut reason = rejection.to_string();
        if reason.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Refusal { kind, reason }
    }
}

/// A packet the session sends, other than a notification.
#[derive(Debug)]
pub(crate) enum Control {
    PubAck {
        pkid: u16,
        refusal: Option<Refusal>,
    },
    PubRec {
        pkid: u16,
        refusal: Option<Refusal>,
    },
    PubComp {
        pkid: u16,
    },
    /// Per filter, the QoS granted or why none was.
    SubAck {
        pkid: u16,
        granted: Vec<Result<QoS, Refusal>>,
    },
    /// Per filter, whether the connection had subscribed to it.
    UnsubAck {
        pkid: u16,
        existed: Vec<bool>,
    },
    PingResp,
}

impl Control {
    /// Sets the refusal of an acknowledgement of a PUBLISH.
    pub fn refused(self, refusal: Refusal) -> Control {
        match self {
            Control::PubAck { pkid, .. } => Control::PubAck { pkid, refusal: Some(refusal) },
            Control::PubRec { pkid, .. } => Control::PubRec { pkid, refusal: Some(refusal) },
            other => other,
        }
    }
}

/// The CONNECT of either version, as the session needs it.
#[derive(Debug)]
pub(crate) struct Connect {
    pub protocol: Protocol,
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub login: Option<(String, String)>,
    pub has_will: bool,
    /// MQTT 5: QoS 1 notifications the client takes unacknowledged.
    pub receive_maximum: Option<u16>,
    /// MQTT 5: the session lifetime the client asked for (the broker keeps none).
    pub session_expiry: Option<u32>,
    /// MQTT 5: an enhanced authentication method, which the broker does not offer.
    pub authentication_method: Option<String>,
}

impl Connect {
    /// Reads the CONNECT at the start of `buffer` (a whole frame), of protocol level `level`.
    pub fn read(buffer: &mut BytesMut, level: u8, max: usize) -> Result<Connect, String> {
        if level == 5 {
            match v5::Packet::read(buffer, Some(max_u32(max))).map_err(|e| e.to_string())? {
                v5::Packet::Connect(connect, will, login) => {
                    let properties = connect.properties.unwrap_or_default();
                    Ok(Connect {
                        protocol: Protocol::V5 {
                            max_packet: properties.max_packet_size,
                            reasons: properties.request_problem_info != Some(0),
                        },
                        client_id: connect.client_id,
                        clean_start: connect.clean_start,
                        keep_alive: connect.keep_alive,
                        login: login.map(|login| (login.username, login.password)),
                        has_will: will.is_some(),
                        receive_maximum: properties.receive_maximum,
                        session_expiry: properties.session_expiry_interval,
                        authentication_method: properties.authentication_method,
                    })
                }
                other => Err(format!("expected CONNECT, got {other:?}")),
            }
        } else {
            match v4::Packet::read(buffer, max).map_err(|e| e.to_string())? {
                v4::Packet::Connect(connect) => Ok(Connect {
                    protocol: Protocol::V4,
                    client_id: connect.client_id,
                    clean_start: connect.clean_session,
                    keep_alive: connect.keep_alive,
                    login: connect.login.map(|login| (login.username, login.password)),
                    has_will: connect.last_will.is_some(),
                    receive_maximum: None,
                    session_expiry: None,
                    authentication_method: None,
                }),
                other => Err(format!("expected CONNECT, got {other:?}")),
            }
        }
    }
}

/// How a CONNECT is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectAnswer {
    Accepted,
    UnsupportedProtocol,
    BadClientId,
    BadCredentials,
    NotAuthorized,
    BadAuthenticationMethod,
}

fn max_u32(max: usize) -> u32 {
    u32::try_from(max).unwrap_or(u32::MAX)
}

fn qos5(qos: QoS) -> QoS5 {
    match qos {
        QoS::AtMostOnce => QoS5::AtMostOnce,
        QoS::AtLeastOnce => QoS5::AtLeastOnce,
        QoS::ExactlyOnce => QoS5::ExactlyOnce,
    }
}

fn qos4(qos: QoS5) -> QoS {
    match qos {
        QoS5::AtMostOnce => QoS::AtMostOnce,
        QoS5::AtLeastOnce => QoS::AtLeastOnce,
        QoS5::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// An MQTT 5 PUBACK/PUBREC reason for a refusal.
fn pub_reason(kind: RefusalKind) -> v5::PubAckReason {
    match kind {
        RefusalKind::TopicInvalid => v5::PubAckReason::TopicNameInvalid,
        RefusalKind::PayloadInvalid => v5::PubAckReason::PayloadFormatInvalid,
        RefusalKind::NotAuthorized => v5::PubAckReason::NotAuthorized,
        RefusalKind::Refused => v5::PubAckReason::ImplementationSpecificError,
        RefusalKind::Internal => v5::PubAckReason::UnspecifiedError,
    }
}

fn rec_reason(kind: RefusalKind) -> v5::PubRecReason {
    match kind {
        RefusalKind::TopicInvalid => v5::PubRecReason::TopicNameInvalid,
        RefusalKind::PayloadInvalid => v5::PubRecReason::PayloadFormatInvalid,
        RefusalKind::NotAuthorized => v5::PubRecReason::NotAuthorized,
        RefusalKind::Refused => v5::PubRecReason::ImplementationSpecificError,
        RefusalKind::Internal => v5::PubRecReason::UnspecifiedError,
    }
}

impl Protocol {
    /// Reads the packet at the start of `buffer` (a whole frame) as an MQTT 3.1.1 packet.
    pub fn read(self, buffer: &mut BytesMut, max: usize) -> Result<v4::Packet, String> {
        match self {
            Protocol::V4 => v4::Packet::read(buffer, max).map_err(|e| e.to_string()),
            Protocol::V5 { .. } => {
                // A DISCONNECT without a reason code (a normal disconnection) or without
                // properties (MQTT 5 §3.14.2.1, §3.14.2.2), which rumqttc's v5 reader refuses.
                match buffer.get(..2) {
                    Some([0xE0, 0]) => {
                        buffer.advance(2);
                        return Ok(v4::Packet::Disconnect);
                    }
                    Some([0xE0, 1]) if buffer.len() >= 3 => {
                        buffer.advance(3);
                        return Ok(v4::Packet::Disconnect);
                    }
                    _ => {}
                }
                let packet =
                    v5::Packet::read(buffer, Some(max_u32(max))).map_err(|e| e.to_string())?;
                from_v5(packet)
            }
        }
    }

    /// Appends the CONNACK answering a CONNECT to `buffer`.
    pub fn encode_connack(
        self,
        answer: ConnectAnswer,
        connect: Option<&Connect>,
        assigned: Option<&str>,
        buffer: &mut BytesMut,
    ) {
        let result = match self {
            Protocol::V4 => {
                let code = match answer {
                    ConnectAnswer::Accepted => v4::ConnectReturnCode::Success,
                    ConnectAnswer::UnsupportedProtocol => {
                        v4::ConnectReturnCode::RefusedProtocolVersion
                    }
                    ConnectAnswer::BadClientId => v4::ConnectReturnCode::BadClientId,
                    ConnectAnswer::BadCredentials | ConnectAnswer::BadAuthenticationMethod => {
                        v4::ConnectReturnCode::BadUserNamePassword
                    }
                    ConnectAnswer::NotAuthorized => v4::ConnectReturnCode::NotAuthorized,
                };
                // The session is always clean: nothing is kept between connections.
                v4::Packet::ConnAck(v4::ConnAck::new(code, false))
                    .write(buffer, MAX_OUTGOING_PACKET)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Protocol::V5 { .. } => {
                let code = match answer {
                    ConnectAnswer::Accepted => v5::ConnectReturnCode::Success,
                    ConnectAnswer::UnsupportedProtocol => {
                        v5::ConnectReturnCode::UnsupportedProtocolVersion
                    }
                    ConnectAnswer::BadClientId => v5::ConnectReturnCode::ClientIdentifierNotValid,
                    ConnectAnswer::BadCredentials => v5::ConnectReturnCode::BadUserNamePassword,
                    ConnectAnswer::NotAuthorized => v5::ConnectReturnCode::NotAuthorized,
                    ConnectAnswer::BadAuthenticationMethod => {
                        v5::ConnectReturnCode::BadAuthenticationMethod
                    }
                };
                let properties =
                    (answer == ConnectAnswer::Accepted).then(|| v5::ConnAckProperties {
                        // No session outlives its connection.
                        session_expiry_interval: connect
                            .and_then(|connect| connect.session_expiry)
                            .filter(|&expiry| expiry > 0)
                            .map(|_| 0),
                        assigned_client_identifier: assigned.map(str::to_owned),
                        // Neither retained messages, topic aliases (maximum 0 by omission), shared
                        // subscriptions nor subscription identifiers.
                        retain_available: Some(0),
                        shared_subscription_available: Some(0),
                        subscription_identifiers_available: Some(0),
                        receive_max: None,
                        max_qos: None,
                        max_packet_size: None,
                        topic_alias_max: None,
                        reason_string: None,
                        user_properties: Vec::new(),
                        wildcard_subscription_available: None,
                        server_keep_alive: None,
                        response_information: None,
                        server_reference: None,
                        authentication_method: None,
                        authentication_data: None,
                    });
                let connack = v5::ConnAck { session_present: false, code, properties };
                v5::Packet::ConnAck(connack)
                    .write(buffer, None)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, "mqtt CONNACK could not be encoded");
        }
    }

    /// Appends `control` to `buffer`.
    pub fn encode(self, control: &Control, buffer: &mut BytesMut) {
        let result = match self {
            Protocol::V4 => to_v4(control)
                .write(buffer, MAX_OUTGOING_PACKET)
                .map(drop)
                .map_err(|e| e.to_string()),
            Protocol::V5 { max_packet, reasons } => {
                // A reason string is left out where the client did not ask for one, or where
                // it would make the packet larger than the client takes (MQTT 5 §3.4.2.2.2).
                let start = buffer.len();
                let mut written = to_v5(control, reasons).write(buffer, max_packet);
                if reasons && written.is_err() {
                    buffer.truncate(start);
                    written = to_v5(control, false).write(buffer, max_packet);
                }
                written.map(drop).map_err(|e| e.to_string())
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, "mqtt packet could not be encoded");
        }
    }

    /// Appends a notification to `buffer`; false (nothing appended) when it is larger than
    /// the client's Maximum Packet Size or cannot be encoded.
    pub fn encode_publish(
        self,
        topic: &str,
        qos: QoS,
        pkid: u16,
        payload: Bytes,
        buffer: &mut BytesMut,
    ) -> bool {
        let result = match self {
            Protocol::V4 => {
                let publish = v4::Publish {
                    dup: false,
                    qos,
                    retain: false,
                    topic: topic.to_owned(),
                    pkid,
                    payload,
                };
                v4::Packet::Publish(publish)
                    .write(buffer, MAX_OUTGOING_PACKET)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Protocol::V5 { max_packet, .. } => {
                let publish = v5::Publish {
                    dup: false,
                    qos: qos5(qos),
                    retain: false,
                    topic: Bytes::copy_from_slice(topic.as_bytes()),
                    pkid,
                    payload,
                    properties: None,
                };
                let most = max_packet.unwrap_or(max_u32(MAX_OUTGOING_PACKET));
                v5::Packet::Publish(publish)
                    .write(buffer, Some(most))
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        result.is_ok()
    }
}

fn to_v4(control: &Control) -> v4::Packet {
    match control {
        Control::PubAck { pkid, .. } => v4::Packet::PubAck(v4::PubAck::new(*pkid)),
        Control::PubRec { pkid, .. } => v4::Packet::PubRec(v4::PubRec::new(*pkid)),
        Control::PubComp { pkid } => v4::Packet::PubComp(v4::PubComp::new(*pkid)),
        Control::SubAck { pkid, granted } => {
            let codes = granted
                .iter()
                .map(|granted| match granted {
                    Ok(qos) => v4::SubscribeReasonCode::Success(*qos),
                    Err(_) => v4::SubscribeReasonCode::Failure,
                })
                .collect();
            v4::Packet::SubAck(v4::SubAck::new(*pkid, codes))
        }
        Control::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(*pkid)),
        Control::PingResp => v4::Packet::PingResp,
    }
}

/// `control` as an MQTT 5 packet, with reason strings when `reasons`.
fn to_v5(control: &Control, reasons: bool) -> v5::Packet {
    let reason_string = |refusal: &Option<Refusal>| {
        refusal.as_ref().filter(|_| reasons).map(|refusal| refusal.reason.clone())
    };
    match control {
        Control::PubAck { pkid, refusal } => v5::Packet::PubAck(v5::PubAck {
            pkid: *pkid,
            reason: refusal.as_ref().map_or(v5::PubAckReason::Success, |r| pub_reason(r.kind)),
            properties: reason_string(refusal).map(|reason_string| v5::PubAckProperties {
                reason_string: Some(reason_string),
                user_properties: Vec::new(),
            }),
        }),
        Control::PubRec { pkid, refusal } => v5::Packet::PubRec(v5::PubRec {
            pkid: *pkid,
            reason: refusal.as_ref().map_or(v5::PubRecReason::Success, |r| rec_reason(r.kind)),
            properties: reason_string(refusal).map(|reason_string| v5::PubRecProperties {
                reason_string: Some(reason_string),
                user_properties: Vec::new(),
            }),
        }),
        Control::PubComp { pkid } => v5::Packet::PubComp(v5::PubComp::new(*pkid, None)),
        Control::SubAck { pkid, granted } => {
            let return_codes = granted
                .iter()
                .map(|granted| match granted {
                    Ok(qos) => v5::SubscribeReasonCode::Success(qos5(*qos)),
                    Err(refusal) => match refusal.kind {
                        RefusalKind::TopicInvalid => v5::SubscribeReasonCode::TopicFilterInvalid,
                        RefusalKind::NotAuthorized => v5::SubscribeReasonCode::NotAuthorized,
                        _ => v5::SubscribeReasonCode::Unspecified,
                    },
                })
                .collect();
            let refused: Vec<&str> = granted
                .iter()
                .filter_map(|granted| granted.as_ref().err().map(|refusal| refusal.reason.as_str()))
                .collect();
            let properties = (reasons && !refused.is_empty()).then(|| v5::SubAckProperties {
                reason_string: Some(refused.join("; ")),
                user_properties: Vec::new(),
            });
            v5::Packet::SubAck(v5::SubAck { pkid: *pkid, return_codes, properties })
        }
        Control::UnsubAck { pkid, existed } => {
            let reasons = existed
                .iter()
                .map(|&existed| {
                    if existed {
                        v5::UnsubAckReason::Success
                    } else {
                        v5::UnsubAckReason::NoSubscriptionExisted
                    }
                })
                .collect();
            v5::Packet::UnsubAck(v5::UnsubAck { pkid: *pkid, reasons, properties: None })
        }
        Control::PingResp => v5::Packet::PingResp(v5::PingResp),
    }
}

/// An MQTT 5 packet from a client as the MQTT 3.1.1 packet the session handles.
fn from_v5(packet: v5::Packet) -> Result<v4::Packet, String> {
    Ok(match packet {
        v5::Packet::Publish(publish) => {
            if publish.properties.as_ref().is_some_and(|p| p.topic_alias.is_some()) {
                return Err(
                    "a topic alias, where the broker allows none (Topic Alias Maximum 0)".into()
                );
            }
            let topic = String::from_utf8(publish.topic.to_vec())
                .map_err(|_| "a topic name that is not UTF-8".to_owned())?;
            v4::Packet::Publish(v4::Publish {
                dup: publish.dup,
                qos: qos4(publish.qos),
                retain: publish.retain,
                topic,
                pkid: publish.pkid,
                payload: publish.payload,
            })
        }
        v5::Packet::PubAck(ack) => v4::Packet::PubAck(v4::PubAck::new(ack.pkid)),
        v5::Packet::PubRec(rec) => v4::Packet::PubRec(v4::PubRec::new(rec.pkid)),
        v5::Packet::PubRel(rel) => v4::Packet::PubRel(v4::PubRel::new(rel.pkid)),
        v5::Packet::PubComp(comp) => v4::Packet::PubComp(v4::PubComp::new(comp.pkid)),
        v5::Packet::Subscribe(subscribe) => v4::Packet::Subscribe(v4::Subscribe {
            pkid: subscribe.pkid,
            filters: subscribe
                .filters
                .into_iter()
                .map(|filter| v4::SubscribeFilter::new(filter.path, qos4(filter.qos)))
                .collect(),
        }),
        v5::Packet::Unsubscribe(unsubscribe) => v4::Packet::Unsubscribe(v4::Unsubscribe {
            pkid: unsubscribe.pkid,
            topics: unsubscribe.filters,
        }),
        v5::Packet::PingReq(_) => v4::Packet::PingReq,
        v5::Packet::Disconnect(_) => v4::Packet::Disconnect,
        v5::Packet::Connect(..) => return Err("second CONNECT".into()),
        v5::Packet::Auth(_) => return Err("AUTH, where no authentication method was agreed".into()),
        v5::Packet::ConnAck(_)
        | v5::Packet::SubAck(_)
        | v5::Packet::UnsubAck(_)
        | v5::Packet::PingResp(_) => {
            return Err("a server-to-client packet sent by the client".into());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(reason: &str) -> Option<Refusal> {
        Some(Refusal { kind: RefusalKind::PayloadInvalid, reason: reason.into() })
    }

    /// The PUBACK an MQTT 5 client with `max_packet` and `reasons` gets for `control`.
    fn puback(max_packet: Option<u32>, reasons: bool, control: &Control) -> v5::PubAck {
        let mut buffer = BytesMut::new();
        Protocol::V5 { max_packet, reasons }.encode(control, &mut buffer);
        match v5::Packet::read(&mut buffer, None) {
            Ok(v5::Packet::PubAck(ack)) => ack,
            other => panic!("expected a PUBACK, got {other:?}"),
        }
    }

    #[test]
    fn a_refused_publish_gets_its_reason_code_and_string_as_the_client_allows() {
        let control = Control::PubAck { pkid: 7, refusal: refusal("the payload is not JSON") };
        let full = puback(None, true, &control);
        assert_eq!(full.reason, v5::PubAckReason::PayloadFormatInvalid);
        assert_eq!(
            full.properties.and_then(|p| p.reason_string).as_deref(),
            Some("the payload is not JSON")
        );
        // Request Problem Information 0: the code alone.
        let bare = puback(None, false, &control);
        assert_eq!((bare.pkid, bare.reason), (7, v5::PubAckReason::PayloadFormatInvalid));
        assert!(bare.properties.is_none());
        // A reason string that would exceed the client's Maximum Packet Size is left out.
        let long = Control::PubAck { pkid: 7, refusal: refusal(&"x".repeat(100)) };
        let small = puback(Some(32), true, &long);
        assert_eq!(small.reason, v5::PubAckReason::PayloadFormatInvalid);
        assert!(small.properties.is_none());
        // Success carries no properties at all.
        let ok = puback(None, true, &Control::PubAck { pkid: 8, refusal: None });
        assert_eq!((ok.reason, ok.properties), (v5::PubAckReason::Success, None));
    }

    #[test]
    fn reason_strings_are_cut_at_a_character_boundary() {
        let rejection = Rejection::Payload(format!("{}é", "x".repeat(MAX_REASON - 1)));
        let reason = Refusal::of(&rejection).reason;
        assert_eq!(reason.len(), MAX_REASON - 1);
        assert!(reason.chars().all(|c| c == 'x'));
    }

    /// As mosquitto_pub sends it: a normal disconnection without a reason code; then one with
    /// a reason code and no properties; then one with both (0x04: disconnect with will).
    #[test]
    fn a_disconnect_without_a_reason_code_is_a_normal_disconnection() {
        let protocol = Protocol::V5 { max_packet: None, reasons: true };
        let frames = [0xE0, 0x00, 0xE0, 0x01, 0x00, 0xE0, 0x02, 0x04, 0x00];
        let mut buffer = BytesMut::from(&frames[..]);
        for _ in 0..3 {
            assert!(matches!(protocol.read(&mut buffer, 1 << 20), Ok(v4::Packet::Disconnect)));
        }
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_topic_alias_is_refused() {
        let mut publish = v5::Publish::new("v1.1/Observations", QoS5::AtLeastOnce, "{}", None);
        publish.pkid = 1;
        publish.properties = Some(v5::PublishProperties {
            topic_alias: Some(1),
            payload_format_indicator: None,
            message_expiry_interval: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
            subscription_identifiers: Vec::new(),
            content_type: None,
        });
        let mut buffer = BytesMut::new();
        v5::Packet::Publish(publish).write(&mut buffer, None).expect("encode");
        let read = Protocol::V5 { max_packet: None, reasons: true }.read(&mut buffer, 1 << 20);
        assert!(read.is_err_and(|error| error.contains("topic alias")));
    }
}
