//! The DNS server: UDP and TCP on the addresses containers are given as their resolver,
//! answering swarm names from the current [`DnsTable`] and forwarding every other query to
//! the host's resolvers.
//!
//! Sockets are bound with `SO_REUSEPORT`: several swarmd nodes on one machine (tests, or a
//! user's experiment) serve the same gateway address, and they all know the same names.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::table::{Answer, DnsTable};

/// TTL of a VIP answer: VIPs live as long as the service (Docker answers 600 too).
const VIP_TTL: u32 = 600;
/// Task addresses change as tasks come and go: never cached.
const TASKS_TTL: u32 = 0;
/// How long a forwarded query may take before the client gets SERVFAIL.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a TCP client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Errors of binding the server's sockets.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("binding the DNS server on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Shared state of one server: the table it answers from and where it forwards.
struct Resolver {
    table: watch::Receiver<Arc<DnsTable>>,
    upstreams: Vec<SocketAddr>,
    /// Rotates task lists so successive dnsrr answers start with different tasks.
    rotation: AtomicUsize,
}

/// A running server; dropping it does not stop it, cancelling the token given to
/// [`DnsServer::start`] does.
pub struct DnsServer {
    local: Vec<SocketAddr>,
}

impl DnsServer {
    /// Binds UDP and TCP on every address of `addrs` and serves until `cancel`. Queries that
    /// are not swarm names go to `upstreams` (none: answered REFUSED).
    pub async fn start(
        addrs: &[SocketAddr],
        table: watch::Receiver<Arc<DnsTable>>,
        upstreams: Vec<SocketAddr>,
        cancel: CancellationToken,
    ) -> Result<DnsServer, DnsError> {
        let resolver = Arc::new(Resolver {
            table,
            upstreams,
            rotation: AtomicUsize::new(0),
        });
        let mut local = Vec::new();
        for &addr in addrs {
            let (udp, tcp, bound) =
                bind_pair(addr).map_err(|source| DnsError::Bind { addr, source })?;
            local.push(bound);
            tokio::spawn(serve_udp(udp, resolver.clone(), cancel.clone()));
            tokio::spawn(serve_tcp(tcp, resolver.clone(), cancel.clone()));
        }
        Ok(DnsServer { local })
    }

    /// The bound addresses (UDP; TCP listens on the same), in the order given.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }
}

fn reuse_socket(addr: SocketAddr, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, ty, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    // A gateway address may not be up yet (its bridge appears with the network's first
    // task on this machine): bind anyway, packets arrive once it is.
    if addr.is_ipv4() {
        s.set_freebind_v4(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// UDP and TCP on one port. Port 0 lets UDP pick one and TCP take the same; when another
/// socket already holds that port for TCP, a few other picks are tried.
fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener, SocketAddr)> {
    let mut tries = if addr.port() == 0 { 8 } else { 1 };
    loop {
        let udp = bind_udp(addr)?;
        let bound = udp.local_addr()?;
        match bind_tcp(bound) {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries > 1 => tries -= 1,
            Err(e) => return Err(e),
        }
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = reuse_socket(addr, socket2::Type::DGRAM)?;
    UdpSocket::from_std(s.into())
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = reuse_socket(addr, socket2::Type::STREAM)?;
    s.listen(128)?;
    TcpListener::from_std(s.into())
}

async fn serve_udp(sock: UdpSocket, resolver: Arc<Resolver>, cancel: CancellationToken) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "dns: udp receive failed");
                    continue;
                }
            },
        };
        let query = buf[..n].to_vec();
        let sock = sock.clone();
        let resolver = resolver.clone();
        tokio::spawn(async move {
            if let Some(reply) = resolver.respond(&query, peer.ip(), false).await
                && let Err(e) = sock.send_to(&reply, peer).await
            {
                debug!(error = %e, %peer, "dns: udp reply failed");
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>, cancel: CancellationToken) {
    loop {
        let (conn, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "dns: tcp accept failed");
                    continue;
                }
            },
        };
        let resolver = resolver.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = serve_tcp_conn(conn, peer.ip(), &resolver) => {}
            }
        });
    }
}

/// Length-prefixed messages (RFC 1035 §4.2.2), one after another, until EOF or idleness.
async fn serve_tcp_conn(mut conn: TcpStream, peer: IpAddr, resolver: &Resolver) {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if conn.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some(reply) = resolver.respond(&query, peer, true).await else {
            return;
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return;
        };
        if conn.write_all(&n.to_be_bytes()).await.is_err() || conn.write_all(&reply).await.is_err()
        {
            return;
        }
    }
}

impl Resolver {
    /// The reply to one query; `None` when there is nothing to send (undecodable input).
    async fn respond(&self, query: &[u8], client: IpAddr, tcp: bool) -> Option<Vec<u8>> {
        let msg = match Message::from_vec(query) {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, %client, "dns: undecodable query");
                return None;
            }
        };
        if msg.metadata.message_type != MessageType::Query {
            return None;
        }
        let local = {
            let table = self.table.borrow();
            answer_locally(&table, &msg, client, &self.rotation)
        };
        match local {
            Some(reply) => reply.to_vec().ok(),
            None => self.forward(query, &msg, tcp).await,
        }
    }

    /// Sends the query, unchanged, to the upstream resolvers in turn; SERVFAIL if none answers.
    async fn forward(&self, query: &[u8], msg: &Message, tcp: bool) -> Option<Vec<u8>> {
        for &up in &self.upstreams {
            let r = tokio::time::timeout(FORWARD_TIMEOUT, async {
                if tcp {
                    forward_tcp(up, query).await
                } else {
                    forward_udp(up, query).await
                }
            })
            .await;
            match r {
                Ok(Ok(reply)) => return Some(reply),
                Ok(Err(e)) => debug!(error = %e, upstream = %up, "dns: forwarding failed"),
                Err(_) => debug!(upstream = %up, "dns: upstream timed out"),
            }
        }
        let code = if self.upstreams.is_empty() {
            ResponseCode::Refused
        } else {
            warn!(
                name = msg.queries.first().map(|q| q.name().to_ascii()),
                "dns: no upstream resolver answered"
            );
            ResponseCode::ServFail
        };
        error_reply(msg, code).to_vec().ok()
    }
}

fn error_reply(msg: &Message, code: ResponseCode) -> Message {
    let mut r = Message::error_msg(msg.metadata.id, msg.metadata.op_code, code);
    r.metadata.recursion_desired = msg.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_queries(msg.queries.iter().cloned());
    r
}

/// Answers `msg` from the table, or `None` when it is not a single query for a swarm name
/// (then it is forwarded). A swarm name asked for a type other than A gets an empty answer
/// (NODATA), so clients asking AAAA first do not wait on a forwarder.
pub(crate) fn answer_locally(
    table: &DnsTable,
    msg: &Message,
    client: IpAddr,
    rotation: &AtomicUsize,
) -> Option<Message> {
    if msg.metadata.op_code != OpCode::Query || msg.queries.len() != 1 {
        return None;
    }
    let q = &msg.queries[0];
    let answer = table.lookup(client, &q.name().to_ascii())?;
    let mut reply = Message::response(msg.metadata.id, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = msg.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(q.clone());
    if matches!(q.query_type(), RecordType::A | RecordType::ANY) {
        let (addrs, ttl) = match answer {
            Answer::Vip(vip) => (vec![*vip], VIP_TTL),
            Answer::Tasks(list) => {
                let mut list = list.clone();
                if !list.is_empty() {
                    let k = rotation.fetch_add(1, Ordering::Relaxed) % list.len();
                    list.rotate_left(k);
                }
                (list, TASKS_TTL)
            }
        };
        for a in addrs {
            reply.add_answer(Record::from_rdata(q.name().clone(), ttl, RData::A(A(a))));
        }
    }
    Some(reply)
}

async fn forward_udp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if up.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(up).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    let n = sock.recv(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

async fn forward_tcp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(up).await?;
    let n = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    conn.write_all(&n.to_be_bytes()).await?;
    conn.write_all(query).await?;
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut buf).await?;
    Ok(buf)
}

/// The host's resolvers from a resolv.conf text, minus `exclude` (our own addresses, which
/// would loop) and Docker's embedded resolver (only meaningful inside a container).
pub fn upstreams_from_resolv_conf(text: &str, exclude: &[IpAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then_some(words.next()?)
        })
        .filter_map(|w| w.parse::<IpAddr>().ok())
        .filter(|ip| !exclude.contains(ip) && *ip != IpAddr::from([127, 0, 0, 11]))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    use super::*;
    use crate::table::{NetworkScope, ServiceRecord, Subnet};

    fn table() -> DnsTable {
        DnsTable::build(
            vec![NetworkScope {
                id: "n".into(),
                subnet: Subnet::parse("10.0.1.0/24").unwrap(),
            }],
            &[
                ServiceRecord {
                    network_id: "n".into(),
                    name: "api".into(),
                    aliases: vec![],
                    vip: Some(Ipv4Addr::new(10, 0, 1, 2)),
                    task_addrs: vec![Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 1, 11)],
                },
                ServiceRecord {
                    network_id: "n".into(),
                    name: "idle".into(),
                    aliases: vec![],
                    vip: None,
                    task_addrs: vec![],
                },
            ],
            &[],
        )
    }

    fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        m.to_vec().unwrap()
    }

    fn a_records(reply: &[u8]) -> Vec<Ipv4Addr> {
        Message::from_vec(reply)
            .unwrap()
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(ip)) => Some(ip),
                _ => None,
            })
            .collect()
    }

    /// A fake upstream resolver on loopback that answers every query with 192.0.2.1.
    async fn fake_upstream() -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                let q = Message::from_vec(&buf[..n]).unwrap();
                let mut r = Message::response(q.metadata.id, OpCode::Query);
                r.add_queries(q.queries.iter().cloned());
                r.add_answer(Record::from_rdata(
                    q.queries[0].name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                ));
                sock.send_to(&r.to_vec().unwrap(), peer).await.unwrap();
            }
        });
        addr
    }

    /// Starts a server on loopback; the table's sender is returned to keep it alive.
    async fn start(
        upstreams: Vec<SocketAddr>,
    ) -> (SocketAddr, CancellationToken, watch::Sender<Arc<DnsTable>>) {
        let (tx, rx) = watch::channel(Arc::new(table()));
        let cancel = CancellationToken::new();
        let s = DnsServer::start(
            &["127.0.0.1:0".parse().unwrap()],
            rx,
            upstreams,
            cancel.clone(),
        )
        .await
        .unwrap();
        (s.local_addrs()[0], cancel, tx)
    }

    async fn ask_udp(server: SocketAddr, q: &[u8]) -> Vec<u8> {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(q, server).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn swarm_names_are_answered_and_others_are_not() {
        let t = table();
        let rot = AtomicUsize::new(0);
        let client = IpAddr::from([10, 0, 1, 50]);
        let q = Message::from_vec(&query("api.", RecordType::A)).unwrap();
        let r = answer_locally(&t, &q, client, &rot).unwrap();
        assert_eq!(r.metadata.id, q.metadata.id);
        assert_eq!(
            a_records(&r.to_vec().unwrap()),
            vec![Ipv4Addr::new(10, 0, 1, 2)]
        );
        assert_eq!(r.answers[0].ttl, VIP_TTL);
        // AAAA of a swarm name: NODATA, not forwarded.
        let q = Message::from_vec(&query("api.", RecordType::AAAA)).unwrap();
        let r = answer_locally(&t, &q, client, &rot).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        // A service without tasks in dnsrr mode: NODATA.
        let q = Message::from_vec(&query("idle.", RecordType::A)).unwrap();
        assert!(
            answer_locally(&t, &q, client, &rot)
                .unwrap()
                .answers
                .is_empty()
        );
        // Other names, and clients outside the network, are left to the forwarder.
        let q = Message::from_vec(&query("example.org.", RecordType::A)).unwrap();
        assert!(answer_locally(&t, &q, client, &rot).is_none());
        let q = Message::from_vec(&query("api.", RecordType::A)).unwrap();
        assert!(answer_locally(&t, &q, IpAddr::from([192, 168, 0, 1]), &rot).is_none());
    }

    #[test]
    fn task_lists_rotate() {
        let t = table();
        let rot = AtomicUsize::new(0);
        let client = IpAddr::from([10, 0, 1, 50]);
        let q = Message::from_vec(&query("tasks.api.", RecordType::A)).unwrap();
        let first = a_records(
            &answer_locally(&t, &q, client, &rot)
                .unwrap()
                .to_vec()
                .unwrap(),
        );
        let second = a_records(
            &answer_locally(&t, &q, client, &rot)
                .unwrap()
                .to_vec()
                .unwrap(),
        );
        assert_eq!(first.len(), 2);
        assert_ne!(first, second);
        let mut a = first.clone();
        let mut b = second.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn serves_udp_and_tcp_and_forwards_the_rest() {
        let up = fake_upstream().await;
        let (server, cancel, _table) = start(vec![up]).await;
        // 127.0.0.1 is outside every swarm network: even "api" is forwarded for it.
        let r = ask_udp(server, &query("api.", RecordType::A)).await;
        assert_eq!(a_records(&r), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        // TCP framing: two queries on one connection.
        let mut c = TcpStream::connect(server).await.unwrap();
        for _ in 0..2 {
            let q = query("example.org.", RecordType::A);
            c.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
            c.write_all(&q).await.unwrap();
            let mut len = [0u8; 2];
            c.read_exact(&mut len).await.unwrap();
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            c.read_exact(&mut buf).await.unwrap();
            // The fake upstream only speaks UDP: TCP forwarding fails, so SERVFAIL.
            let m = Message::from_vec(&buf).unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        }
        cancel.cancel();
    }

    #[tokio::test]
    async fn without_upstreams_other_names_are_refused_and_garbage_is_ignored() {
        let (server, cancel, _table) = start(vec![]).await;
        let r = ask_udp(server, &query("example.org.", RecordType::A)).await;
        assert_eq!(
            Message::from_vec(&r).unwrap().metadata.response_code,
            ResponseCode::Refused
        );
        // Garbage gets no reply; the server keeps answering afterwards.
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(b"\x01\x02garbage", server).await.unwrap();
        let r = ask_udp(server, &query("example.org.", RecordType::A)).await;
        assert!(!r.is_empty());
        cancel.cancel();
    }

    #[test]
    fn resolv_conf_upstreams_skip_ourselves_and_dockers_embedded_resolver() {
        let text = "# generated\nnameserver 10.0.1.1\nnameserver 127.0.0.11\nnameserver 192.0.2.53\nsearch example\n";
        assert_eq!(
            upstreams_from_resolv_conf(text, &[IpAddr::from([10, 0, 1, 1])]),
            vec!["192.0.2.53:53".parse::<SocketAddr>().unwrap()]
        );
    }
}
