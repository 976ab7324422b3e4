//! Dialling an engine's TLS port (`tcp://host:port` of classic's discovery).

use std::io;
use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Connects to `addr` (`host:port`, `[v6]:port`) and completes the TLS handshake; the
/// engine's certificate must name `host` (an IP SAN for an address) when `config` verifies.
pub async fn dial(
    config: &Arc<rustls::ClientConfig>,
    addr: &str,
) -> io::Result<TlsStream<TcpStream>> {
    let name = server_name(addr)?;
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    TlsConnector::from(config.clone()).connect(name, tcp).await
}

/// The host part of `addr` as the name the engine's certificate is checked against.
fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let host = match addr.rsplit_once(':') {
        Some((host, _port)) => host,
        None => return Err(invalid(format!("{addr}: missing port in address"))),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_string())
        .map_err(|e| invalid(format!("{addr}: invalid server name: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_the_host_part() {
        assert_eq!(
            server_name("10.77.1.2:2376").unwrap(),
            ServerName::IpAddress(std::net::Ipv4Addr::new(10, 77, 1, 2).into())
        );
        assert_eq!(
            server_name("[::1]:2376").unwrap(),
            ServerName::IpAddress(std::net::Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(
            server_name("engine-1.example:2376").unwrap(),
            ServerName::try_from("engine-1.example").unwrap()
        );
        assert!(server_name("no-port").is_err());
    }
}
