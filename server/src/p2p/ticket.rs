//! Tickets: how a node tells others where to reach it, `NODE_ID@ADDR[,ADDR...]` (hex node id, socket
//! addresses). Plain text so that it can be read, copied and checked by eye.

use std::net::SocketAddr;

/// A peer's id and direct addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Node id (ed25519 public key).
    pub id: [u8; 32],
    /// Direct socket addresses.
    pub addrs: Vec<SocketAddr>,
}

/// A ticket that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("not a ticket ({0}); expected NODE_ID@ADDR[,ADDR...] as printed by `cairn ticket`")]
pub struct BadTicket(&'static str);

impl Ticket {
    /// Parses `NODE_ID@ADDR[,ADDR...]`.
    pub fn parse(s: &str) -> Result<Self, BadTicket> {
        let (id, addrs) = s.trim().split_once('@').ok_or(BadTicket("no '@'"))?;
        let mut idb = [0u8; 32];
        hex::decode_to_slice(id, &mut idb)
            .map_err(|_| BadTicket("node id must be 64 hex digits"))?;
        let addrs = addrs
            .split(',')
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|_| BadTicket("bad address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err(BadTicket("no address"));
        }
        Ok(Ticket { id: idb, addrs })
    }

    /// The addresses, comma-separated.
    pub fn addrs_string(&self) -> String {
        self.addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", hex::encode(self.id), self.addrs_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let t = Ticket {
            id: [7; 32],
            addrs: vec![
                "127.0.0.1:4000".parse().unwrap(),
                "[::1]:5".parse().unwrap(),
            ],
        };
        assert_eq!(Ticket::parse(&t.to_string()).unwrap(), t);
        for bad in [
            "",
            "abc",
            "07@1.2.3.4:5",
            &format!("{}@", "07".repeat(32)),
            &format!("{}@x", "07".repeat(32)),
        ] {
            assert!(Ticket::parse(bad).is_err(), "{bad}");
        }
    }
}
