//! A minimal MQTT 3.1.1 client: CONNECT, PUBLISH at QoS 0 or 1, PUBACK, and SUBSCRIBE at
//! QoS 0. That is all a device does to post Observations and a dashboard to follow them, and
//! all the harness needs to measure the broker; a full client library would only add weight.
//!
//! ```text
//! CONNECT (clean session, no keep-alive) ─▶ CONNACK 0
//! PUBLISH v1.1/Datastreams(ID)/Observations {json}  QoS 0: no answer
//!                                                   QoS 1: ─▶ PUBACK(packet id)
//! SUBSCRIBE v1.1/Observations QoS 0 ─▶ SUBACK, then PUBLISH per notification
//! ```

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufWriter};
use tokio::net::TcpStream;

use crate::client::OpError;

/// How long to wait for CONNACK or PUBACK before calling the broker unresponsive.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One MQTT connection.
#[derive(Debug)]
pub struct Publisher {
    stream: BufWriter<TcpStream>,
    next_packet_id: u16,
}

fn remaining_length(mut length: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if length == 0 {
            break;
        }
    }
}

fn string(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The CONNECT packet of a clean session without keep-alive.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.push(4); // protocol level 3.1.1
    body.push(0x02); // clean session
    body.extend_from_slice(&0u16.to_be_bytes()); // keep-alive off
    string(client_id, &mut body);
    let mut packet = vec![0x10];
    remaining_length(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    packet
}

/// A SUBSCRIBE packet of one topic at QoS 0.
fn subscribe_packet(topic: &str, packet_id: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + 5);
    body.extend_from_slice(&packet_id.to_be_bytes());
    string(topic, &mut body);
    body.push(0);
    let mut packet = vec![0x82];
    remaining_length(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    packet
}

/// A PUBLISH packet; `packet_id` is used (and required) at QoS 1.
fn publish_packet(topic: &str, payload: &[u8], packet_id: Option<u16>) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    string(topic, &mut body);
    if let Some(id) = packet_id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    let mut packet = vec![if packet_id.is_some() { 0x32 } else { 0x30 }];
    remaining_length(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    packet
}

fn io_error(error: std::io::Error) -> OpError {
    OpError(format!("MQTT: {error}"))
}

impl Publisher {
    /// Connects to `addr` (`host:port`) and waits for a successful CONNACK.
    pub async fn connect(addr: &str, client_id: &str) -> Result<Publisher, OpError> {
        let stream = TcpStream::connect(addr).await.map_err(io_error)?;
        stream.set_nodelay(true).map_err(io_error)?;
        let mut publisher = Publisher { stream: BufWriter::new(stream), next_packet_id: 1 };
        publisher.stream.write_all(&connect_packet(client_id)).await.map_err(io_error)?;
        publisher.stream.flush().await.map_err(io_error)?;
        let (kind, body) = publisher.read_packet().await?;
        match (kind, body.get(1)) {
            (0x20, Some(0)) => Ok(publisher),
            (0x20, Some(code)) => {
                Err(OpError(format!("MQTT: CONNACK refused the connection ({code})")))
            }
            _ => Err(OpError(format!("MQTT: expected CONNACK, got packet type {kind:#x}"))),
        }
    }

    /// Reads one packet: its first byte's type nibble (shifted back) and its body.
    async fn read_packet(&mut self) -> Result<(u8, Vec<u8>), OpError> {
        let read = async {
            let stream = self.stream.get_mut();
            let first = stream.read_u8().await?;
            let mut length = 0usize;
            let mut shift = 0;
            loop {
                let byte = stream.read_u8().await?;
                length |= usize::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 || shift > 21 {
                    break;
                }
            }
            let mut body = vec![0; length];
            stream.read_exact(&mut body).await?;
            Ok::<_, std::io::Error>((first & 0xf0, body))
        };
        match tokio::time::timeout(ANSWER_TIMEOUT, read).await {
            Ok(result) => result.map_err(io_error),
            Err(_) => Err(OpError("MQTT: no answer from the broker".into())),
        }
    }

    /// Publishes at QoS 0; buffered, so call [`Publisher::flush`] now and then.
    pub async fn publish_qos0(&mut self, topic: &str, payload: &[u8]) -> Result<(), OpError> {
        self.stream.write_all(&publish_packet(topic, payload, None)).await.map_err(io_error)
    }

    pub async fn flush(&mut self) -> Result<(), OpError> {
        self.stream.flush().await.map_err(io_error)
    }

    /// Sends a QoS 1 PUBLISH without waiting for its PUBACK (buffered: call
    /// [`Publisher::flush`]); returns its packet id, for [`Publisher::next_puback`].
    pub async fn send_qos1(&mut self, topic: &str, payload: &[u8]) -> Result<u16, OpError> {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        self.stream.write_all(&publish_packet(topic, payload, Some(id))).await.map_err(io_error)?;
        Ok(id)
    }

    /// Waits for the next PUBACK; returns its packet id.
    pub async fn next_puback(&mut self) -> Result<u16, OpError> {
        loop {
            let (kind, body) = self.read_packet().await?;
            if kind == 0x40 && body.len() >= 2 {
                return Ok(u16::from_be_bytes([body[0], body[1]]));
            }
        }
    }

    /// Subscribes to `topic` at QoS 0 and waits for the SUBACK.
    pub async fn subscribe_qos0(&mut self, topic: &str) -> Result<(), OpError> {
        self.stream.write_all(&subscribe_packet(topic, 1)).await.map_err(io_error)?;
        self.stream.flush().await.map_err(io_error)?;
        loop {
            let (kind, body) = self.read_packet().await?;
            if kind == 0x90 {
                return match body.get(2) {
                    Some(0) => Ok(()),
                    _ => Err(OpError(format!(
                        "MQTT: the broker refused the subscription to {topic}"
                    ))),
                };
            }
        }
    }

    /// The payload of the next QoS 0 PUBLISH the broker sends; `None` when none comes within
    /// the answer timeout.
    pub async fn next_message(&mut self) -> Result<Option<Vec<u8>>, OpError> {
        loop {
            let (kind, mut body) = match self.read_packet().await {
                Ok(packet) => packet,
                Err(OpError(message)) if message.contains("no answer") => return Ok(None),
                Err(error) => return Err(error),
            };
            if kind == 0x30 && body.len() >= 2 {
                let topic_length = usize::from(u16::from_be_bytes([body[0], body[1]]));
                return Ok(Some(body.split_off((2 + topic_length).min(body.len()))));
            }
        }
    }

    /// Publishes at QoS 1 and waits for its PUBACK.
    pub async fn publish_qos1(&mut self, topic: &str, payload: &[u8]) -> Result<(), OpError> {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        self.stream.write_all(&publish_packet(topic, payload, Some(id))).await.map_err(io_error)?;
        self.stream.flush().await.map_err(io_error)?;
        loop {
            let (kind, body) = self.read_packet().await?;
            if kind == 0x40 && body.len() >= 2 && u16::from_be_bytes([body[0], body[1]]) == id {
                return Ok(());
            }
            // Anything else (a PUBACK of an older packet, a server PUBLISH) is skipped.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_connect_and_publish() {
        let connect = connect_packet("b");
        assert_eq!(connect, [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0, 0, 1, b'b']);
        let publish = publish_packet("t", b"{}", Some(7));
        assert_eq!(publish, [0x32, 7, 0, 1, b't', 0, 7, b'{', b'}']);
        assert_eq!(subscribe_packet("t", 1), [0x82, 6, 0, 1, 0, 1, b't', 0]);
        let mut length = Vec::new();
        remaining_length(321, &mut length);
        assert_eq!(length, [0xC1, 0x02]);
    }
}
