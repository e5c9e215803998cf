//! Connection caps: in all and per source address. One address holding
//! every connection the process can open starves everyone else, MQTT's
//! accept included (they share the file-descriptor limit), so each
//! address gets a share and the excess is closed at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::observe;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `http.max_connections` are open.
    Total,
    /// `http.max_connections_per_address` are open from this address.
    PerAddress,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::PerAddress => "per_address",
        }
    }
}

/// Open connections, counted against the caps.
#[derive(Debug)]
pub struct ConnectionCaps {
    total: usize,
    per_address: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admitted {
    caps: Arc<ConnectionCaps>,
    address: IpAddr,
}

impl ConnectionCaps {
    pub fn new(total: usize, per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_address,
            open: Mutex::new(Open::default()),
        })
    }

    /// Takes a place for a connection from `ip`, or says why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let address = address_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.total {
            return Err(Refused::Total);
        }
        let n = open.by_address.entry(address).or_default();
        if *n >= self.per_address {
            return Err(Refused::PerAddress);
        }
        *n += 1;
        open.total += 1;
        observe::http_connections_open(open.total);
        Ok(Admitted {
            caps: self.clone(),
            address,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.address);
            }
        }
        observe::http_connections_open(open.total);
    }
}

/// The address a connection counts against: IPv4 as is (IPv4-mapped IPv6
/// too), IPv6 by its /64, since one host usually holds a whole /64.
fn address_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_share_and_places_come_back() {
        let caps = ConnectionCaps::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Refused::PerAddress);
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(caps.open(), 2);
        assert!(caps.admit(a).is_ok());
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_address() {
        let caps = ConnectionCaps::new(10, 1);
        let _x = caps.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            caps.admit("2001:db8::ffff:2".parse().unwrap()).unwrap_err(),
            Refused::PerAddress
        );
        assert!(caps.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _m = caps.admit("::ffff:10.0.0.9".parse().unwrap()).unwrap();
        assert_eq!(
            caps.admit("10.0.0.9".parse().unwrap()).unwrap_err(),
            Refused::PerAddress
        );
    }
}
