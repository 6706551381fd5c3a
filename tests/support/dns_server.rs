//! A tiny authoritative DNS server for tests: a mutable in-memory zone served over UDP and TCP on
//! one 127.0.0.1 port, so code under test talks real DNS (wire format, truncation and TCP
//! fallback, NXDOMAIN vs NODATA with an SOA for negative caching) without any outside network.
//!
//! Declared once in tests/e2e/main.rs; use it as `crate::dns_server`.
//!
//! It runs on its own thread with its own tokio runtime rather than on the test's runtime: tests
//! that run the real binary block on `std::process::Command`, and a `#[tokio::test]`
//! current-thread runtime would then never answer. Dropping the `DnsServer` stops it.
//!
//! Every record is served with TTL 0 and negative answers carry an SOA with minimum 0, so a
//! change to the zone is seen by the next query even through a caching resolver.
#![allow(dead_code)]

use mail_auth::hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::{A, AAAA, MX, PTR, SOA, TXT};
use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// The largest UDP answer without EDNS (RFC 1035 §4.2.1); bigger ones are truncated (TC) so the
/// client retries over TCP, as with a real server.
const PLAIN_UDP_LIMIT: usize = 512;
/// The UDP payload we advertise and honour with EDNS (the DNS flag day 2020 value).
const EDNS_UDP_LIMIT: u16 = 1232;

/// One record's data, as the zone holds it.
#[derive(Clone, Debug)]
enum Data {
    /// TXT: the character strings as given. A string longer than 255 bytes cannot be sent in
    /// DNS; it is served cut to its first 255 bytes, as a DNS panel that does not split long
    /// values publishes it.
    Txt(Vec<Vec<u8>>),
    Mx(u16, String),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Ptr(String),
}

impl Data {
    fn record_type(&self) -> RecordType {
        match self {
            Data::Txt(_) => RecordType::TXT,
            Data::Mx(..) => RecordType::MX,
            Data::A(_) => RecordType::A,
            Data::Aaaa(_) => RecordType::AAAA,
            Data::Ptr(_) => RecordType::PTR,
        }
    }

    fn rdata(&self) -> Option<RData> {
        Some(match self {
            Data::Txt(strings) => RData::TXT(TXT::from_bytes(
                strings.iter().map(|s| &s[..s.len().min(255)]).collect(),
            )),
            Data::Mx(pref, exchange) => {
                RData::MX(MX::new(*pref, Name::from_str_relaxed(exchange).ok()?))
            }
            Data::A(ip) => RData::A(A::from(*ip)),
            Data::Aaaa(ip) => RData::AAAA(AAAA::from(*ip)),
            Data::Ptr(target) => RData::PTR(PTR(Name::from_str_relaxed(target).ok()?)),
        })
    }
}

#[derive(Default)]
struct Zone {
    /// Owner name (lower case, no trailing dot) -> its records.
    records: BTreeMap<String, Vec<Data>>,
    /// Names answered with SERVFAIL, to test temporary DNS failures.
    failing: Vec<String>,
    /// Every question asked, in order: (name as asked, type).
    log: Vec<(String, RecordType)>,
}

/// A running test DNS server; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Bind UDP and TCP on one free port of 127.0.0.1 and start answering.
    pub fn start() -> DnsServer {
        let zone = Arc::new(Mutex::new(Zone::default()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = zone.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test DNS server: tokio runtime");
            runtime.block_on(async move {
                let (udp, tcp) = bind_pair().await;
                let addr = udp.local_addr().expect("test DNS server: local address");
                let _ = addr_tx.send(addr);
                tokio::select! {
                    _ = serve_udp(Arc::new(udp), served.clone()) => {}
                    _ = serve_tcp(tcp, served) => {}
                    _ = stop_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().expect("test DNS server did not start");
        DnsServer {
            addr,
            zone,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn zone(&self) -> MutexGuard<'_, Zone> {
        // A panic while holding the lock only happens inside a failing test; keep serving.
        self.zone.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, name: &str, data: Data) {
        self.zone().records.entry(key(name)).or_default().push(data);
    }

    /// Add a TXT record made of these character strings (one record, several strings).
    pub fn add_txt(&self, name: &str, strings: Vec<Vec<u8>>) {
        self.add(name, Data::Txt(strings));
    }

    /// Add a TXT record holding `text`, split into 255-byte strings as a zone file would.
    pub fn add_txt_str(&self, name: &str, text: &str) {
        let strings = text.as_bytes().chunks(255).map(|c| c.to_vec()).collect();
        self.add(name, Data::Txt(strings));
    }

    pub fn add_mx(&self, name: &str, preference: u16, exchange: &str) {
        self.add(name, Data::Mx(preference, exchange.to_string()));
    }

    pub fn add_a(&self, name: &str, ip: Ipv4Addr) {
        self.add(name, Data::A(ip));
    }

    pub fn add_aaaa(&self, name: &str, ip: Ipv6Addr) {
        self.add(name, Data::Aaaa(ip));
    }

    /// Add a PTR record (`name` is the reverse name, e.g. `7.113.0.203.in-addr.arpa`).
    pub fn add_ptr(&self, name: &str, target: &str) {
        self.add(name, Data::Ptr(target.to_string()));
    }

    /// Remove every record of `name` (it then answers NXDOMAIN, unless it has names below it).
    pub fn remove(&self, name: &str) {
        self.zone().records.remove(&key(name));
    }

    /// Remove the records of one type at `name`.
    pub fn remove_type(&self, name: &str, rtype: RecordType) {
        let mut zone = self.zone();
        let k = key(name);
        if let Some(list) = zone.records.get_mut(&k) {
            list.retain(|d| d.record_type() != rtype);
            if list.is_empty() {
                zone.records.remove(&k);
            }
        }
    }

    /// Answer SERVFAIL for `name` (any type) until `heal(name)`.
    pub fn fail(&self, name: &str) {
        self.zone().failing.push(key(name));
    }

    pub fn heal(&self, name: &str) {
        let k = key(name);
        self.zone().failing.retain(|n| *n != k);
    }

    /// The questions asked so far: (name, type), in order.
    pub fn queries(&self) -> Vec<(String, RecordType)> {
        self.zone().log.clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// UDP and TCP on the same port: the resolver is told one port for both.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("test DNS server: bind UDP");
        let addr = udp.local_addr().expect("test DNS server: local address");
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("test DNS server: no port free for both UDP and TCP");
}

async fn serve_udp(socket: Arc<UdpSocket>, zone: Arc<Mutex<Zone>>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = answer(&buf[..n], &zone, true) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Mutex<Zone>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_tcp_conn(stream, zone.clone()));
    }
}

/// RFC 1035 §4.2.2: each message is preceded by its two-byte length; several per connection.
async fn serve_tcp_conn(mut stream: TcpStream, zone: Arc<Mutex<Zone>>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if stream.read_exact(&mut msg).await.is_err() {
            return;
        }
        let Some(reply) = answer(&msg, &zone, false) else {
            return;
        };
        let mut out = (reply.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Build the reply to one request (`None`: not worth answering).
fn answer(request: &[u8], zone: &Mutex<Zone>, udp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.authoritative = true;
    reply.queries = request.queries.clone();
    let limit = match &request.edns {
        Some(edns) => {
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_UDP_LIMIT);
            reply.edns = Some(ours);
            edns.max_payload()
                .clamp(PLAIN_UDP_LIMIT as u16, EDNS_UDP_LIMIT) as usize
        }
        None => PLAIN_UDP_LIMIT,
    };

    let (query, rest) = request.queries.split_first()?;
    if request.metadata.op_code != OpCode::Query || !rest.is_empty() {
        reply.metadata.response_code = ResponseCode::NotImp;
        return reply.to_vec().ok();
    }
    let qname = query.name.clone();
    let qkey = key(&qname.to_ascii());
    let qtype = query.query_type;

    let mut z = zone.lock().unwrap_or_else(|e| e.into_inner());
    z.log.push((qname.to_ascii(), qtype));
    if z.failing.contains(&qkey) {
        reply.metadata.response_code = ResponseCode::ServFail;
        return reply.to_vec().ok();
    }
    match z.records.get(&qkey) {
        Some(list) => {
            for data in list.iter().filter(|d| d.record_type() == qtype) {
                if let Some(rdata) = data.rdata() {
                    reply.add_answer(Record::from_rdata(qname.clone(), 0, rdata));
                }
            }
            if reply.answers.is_empty() {
                // NODATA: the name exists, not with this type.
                reply.add_authority(soa_for(&qname));
            }
        }
        None => {
            // A name with records below it (`_domainkey.example.com` when a selector exists) is
            // an empty non-terminal: NODATA, not NXDOMAIN (RFC 8020).
            let suffix = format!(".{qkey}");
            if !z.records.keys().any(|k| k.ends_with(&suffix)) {
                reply.metadata.response_code = ResponseCode::NXDomain;
            }
            reply.add_authority(soa_for(&qname));
        }
    }
    drop(z);

    let bytes = reply.to_vec().ok()?;
    if udp && bytes.len() > limit {
        return reply.truncate().to_vec().ok();
    }
    Some(bytes)
}

/// The SOA of the (pretend) zone holding `name`: its last two labels. Minimum 0 so negative
/// answers are not cached.
fn soa_for(name: &Name) -> Record {
    let labels = name.num_labels();
    let apex = if labels > 2 {
        name.trim_to(2)
    } else {
        name.clone()
    };
    let mname = Name::from_str_relaxed("ns.test.").unwrap_or_else(|_| Name::root());
    let rname = Name::from_str_relaxed("hostmaster.test.").unwrap_or_else(|_| Name::root());
    Record::from_rdata(
        apex,
        0,
        RData::SOA(SOA::new(mname, rname, 1, 3600, 600, 86400, 0)),
    )
}
