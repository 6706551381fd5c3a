//! One DNS question to one nameserver, on the wire. The query asks for DNSSEC: the DO bit in
//! EDNS (RFC 3225) and the AD bit in the header (RFC 6840 5.7: "tell me whether you validated
//! this"). It goes over UDP, and again over TCP when the answer comes back truncated; each
//! transport has its deadline. An answer is believed only once it is the answer to this query:
//! a response, with our id, to our question.
//!
//! Imports nothing of ours.

use mail_auth::hickory_resolver::proto::op::{Edns, Message, MessageType, Query};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

/// The UDP payload size we advertise: the DNS flag day 2020 value, which avoids IP
/// fragmentation; larger answers come truncated and are asked again over TCP.
const EDNS_PAYLOAD: u16 = 1232;

/// Why one exchange with one nameserver produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("no answer from {0} in time")]
    Timeout(SocketAddr),
    #[error("{server}: {error}")]
    Io { server: SocketAddr, error: String },
    #[error("{server} sent an answer that cannot be read: {error}")]
    Malformed { server: SocketAddr, error: String },
}

/// The query message for `query`: recursion desired, AD set, EDNS with DO.
fn request(query: &Query) -> Message {
    let mut m = Message::query();
    m.add_query(query.clone());
    m.metadata.recursion_desired = true;
    m.metadata.authentic_data = true;
    m.metadata.checking_disabled = false;
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD).set_dnssec_ok(true);
    m.set_edns(edns);
    m
}

/// Is `answer` the response to `request`? Same id, a response, the same single question
/// (names compare without regard to case: some resolvers echo 0x20-mixed case back).
fn answers(answer: &Message, request: &Message) -> bool {
    answer.metadata.id == request.metadata.id
        && answer.metadata.message_type == MessageType::Response
        && answer.queries.len() == 1
        && request.queries.first().is_some_and(|q| {
            let a = &answer.queries[0];
            a.name() == q.name()
                && a.query_type() == q.query_type()
                && a.query_class() == q.query_class()
        })
}

/// Ask `server` one question; UDP within `timeout`, then TCP within `timeout` again if the UDP
/// answer was truncated.
pub async fn exchange(
    server: SocketAddr,
    query: &Query,
    timeout: Duration,
) -> Result<Message, WireError> {
    let req = request(query);
    let bytes = req.to_vec().map_err(|e| WireError::Malformed {
        server,
        error: format!("cannot encode the query: {e}"),
    })?;
    let answer = udp(server, &req, &bytes, Instant::now() + timeout).await?;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    tcp(server, &req, &bytes, Instant::now() + timeout).await
}

async fn udp(
    server: SocketAddr,
    req: &Message,
    bytes: &[u8],
    deadline: Instant,
) -> Result<Message, WireError> {
    let io = |e: std::io::Error| WireError::Io {
        server,
        error: e.to_string(),
    };
    let local: SocketAddr = if server.is_ipv4() {
        ([0u8; 4], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    // Connected: the kernel drops datagrams from any other address and port.
    socket.connect(server).await.map_err(io)?;
    socket.send(bytes).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    // Datagrams that are not our answer (late answers to an earlier query on a reused port,
    // forgeries) are skipped until the deadline; the loop is bounded by it.
    loop {
        let n = match timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => return Err(WireError::Timeout(server)),
            Ok(r) => r.map_err(io)?,
        };
        if let Ok(answer) = Message::from_vec(&buf[..n]) {
            if answers(&answer, req) {
                return Ok(answer);
            }
        }
    }
}

async fn tcp(
    server: SocketAddr,
    req: &Message,
    bytes: &[u8],
    deadline: Instant,
) -> Result<Message, WireError> {
    let io = |e: std::io::Error| WireError::Io {
        server,
        error: e.to_string(),
    };
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.map_err(io)?;
        let len = u16::try_from(bytes.len()).map_err(|_| WireError::Malformed {
            server,
            error: "query too long".into(),
        })?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(bytes);
        stream.write_all(&framed).await.map_err(io)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.map_err(io)?;
        let answer = Message::from_vec(&buf).map_err(|e| WireError::Malformed {
            server,
            error: e.to_string(),
        })?;
        if !answers(&answer, req) {
            return Err(WireError::Malformed {
                server,
                error: "the answer over TCP is not for our question".into(),
            });
        }
        Ok(answer)
    };
    timeout_at(deadline, exchange)
        .await
        .unwrap_or(Err(WireError::Timeout(server)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::hickory_resolver::proto::op::ResponseCode;
    use mail_auth::hickory_resolver::proto::rr::rdata::A;
    use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

    fn query() -> Query {
        Query::query(Name::from_ascii("mx.example.").unwrap(), RecordType::A)
    }

    fn response_to(req: &Message, records: usize, truncated: bool) -> Vec<u8> {
        let mut m = Message::response(req.metadata.id, req.metadata.op_code);
        m.add_query(req.queries[0].clone());
        m.metadata.truncation = truncated;
        m.metadata.authentic_data = true;
        m.metadata.response_code = ResponseCode::NoError;
        for i in 0..records {
            m.add_answer(Record::from_rdata(
                req.queries[0].name().clone(),
                60,
                RData::A(A::new(127, 0, 0, (i % 250) as u8)),
            ));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn the_query_asks_for_dnssec() {
        let m = request(&query());
        assert!(m.metadata.recursion_desired);
        assert!(
            m.metadata.authentic_data,
            "AD set in the query (RFC 6840 5.7)"
        );
        assert!(!m.metadata.checking_disabled, "the resolver must validate");
        let edns = m.edns.as_ref().unwrap();
        assert!(edns.flags().dnssec_ok);
        assert_eq!(edns.max_payload(), EDNS_PAYLOAD);
    }

    /// A server that first sends a forgery (wrong id) and a truncated answer over UDP, then the
    /// full answer over TCP: the client skips the forgery and falls back to TCP.
    #[tokio::test]
    async fn skips_strangers_and_falls_back_to_tcp() {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let server = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
            let req = Message::from_vec(&buf[..n]).unwrap();
            let mut forged = Message::from_vec(&response_to(&req, 1, false)).unwrap();
            forged.metadata.id = req.metadata.id.wrapping_add(1);
            udp.send_to(&forged.to_vec().unwrap(), peer).await.unwrap();
            udp.send_to(&response_to(&req, 0, true), peer)
                .await
                .unwrap();
            let (mut s, _) = tcp.accept().await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut q).await.unwrap();
            let req = Message::from_vec(&q).unwrap();
            let body = response_to(&req, 200, false);
            s.write_all(&(body.len() as u16).to_be_bytes())
                .await
                .unwrap();
            s.write_all(&body).await.unwrap();
        });
        let answer = exchange(addr, &query(), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(answer.answers.len(), 200);
        assert!(answer.metadata.authentic_data);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let e = exchange(addr, &query(), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(e, WireError::Timeout(addr));
        drop(udp);
    }
}
