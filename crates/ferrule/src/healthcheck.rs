//! `ferrule healthcheck` (hidden): the container image's HEALTHCHECK probe.
//! It asks this host's server for `/healthz` and exits 0 on a 200, 1
//! otherwise, so that the image needs no curl or shell. The address comes
//! from the same configuration `serve` reads (`$PORT`,
//! `FERRULE_HTTP_LISTEN`, `ferrule.toml`), so a platform that moves the
//! port moves the probe with it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::config::{RawConfig, figment};

/// How long the probe waits for the server at each step.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Where `serve` listens by default.
const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The server's HTTP address, HOST:PORT [default: from the same
    /// configuration as `serve`, on loopback].
    pub address: Option<String>,
}

pub fn main(args: HealthcheckArgs) -> ExitCode {
    match probe(args.address) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe(address: Option<String>) -> Result<(), String> {
    let listen = match address {
        Some(a) => a,
        None => configured_listen()?,
    };
    let addr = loopback(&listen)?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let io = |e: std::io::Error| format!("talking to {addr}: {e}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    // The status line is all we need; the body is a few bytes.
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(io)?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!("GET http://{addr}/healthz answered {status:?}"))
    }
}

/// `http.listen` as `serve` would resolve it, flags aside.
fn configured_listen() -> Result<String, String> {
    let raw: RawConfig = figment(None, &RawConfig::default())
        .and_then(|f| {
            f.extract()
                .map_err(|e| crate::startup::StartupError::new("configuration", e.to_string()))
        })
        .map_err(|e| e.to_string())?;
    Ok(raw.http.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()))
}

/// The address to probe: a wildcard listen address becomes loopback.
fn loopback(listen: &str) -> Result<SocketAddr, String> {
    let mut addr = listen
        .to_socket_addrs()
        .map_err(|e| format!("{listen:?} is not HOST:PORT: {e}"))?
        .next()
        .ok_or_else(|| format!("{listen:?} has no address"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_address_is_probed_on_loopback() {
        assert_eq!(
            loopback("0.0.0.0:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            loopback("[::]:9000").unwrap(),
            "[::1]:9000".parse().unwrap()
        );
        assert_eq!(
            loopback("10.0.0.5:80").unwrap(),
            "10.0.0.5:80".parse().unwrap()
        );
        assert!(loopback("nonsense").is_err());
    }
}
