//! The RabbitMQ node the bench publishes to, as a process, so its CPU time
//! can be read beside the gateway's (they share the machine's cores). The
//! node is found by the socket listening on the AMQP URL's address, not by
//! name: a test cluster's other `beam.smp` processes may run beside it, and
//! RabbitMQ 3.10 does not put the node name on `beam.smp`'s command line.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs},
};

use crate::process::ProcStat;

/// The TCP state /proc/net/tcp prints for a listening socket.
const LISTEN: &str = "0A";

/// The process listening on `amqp_url`'s host and port (RabbitMQ's
/// `beam.smp`), or `None` when it is not on this machine or /proc does not
/// show it (another user's file descriptors need root).
pub fn find(amqp_url: &str) -> Option<u32> {
    let uri: lapin::uri::AMQPUri = amqp_url.parse().ok()?;
    let port = uri.authority.port;
    let addresses: Vec<IpAddr> = (uri.authority.host.as_str(), port)
        .to_socket_addrs()
        .ok()?
        .map(|a| a.ip())
        .collect();
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, &addresses, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let sockets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|target| {
                        sockets.iter().any(|s| target.as_os_str() == s.as_str())
                    })
                })
            })
        })
}

/// CPU seconds process `pid` spent while `work` ran (`None` without a pid
/// or when /proc cannot be read).
pub async fn cpu_during<F: Future>(pid: Option<u32>, work: F) -> (F::Output, Option<f64>) {
    let before = pid.and_then(ProcStat::read);
    let output = work.await;
    let after = pid.and_then(ProcStat::read);
    let spent = before
        .zip(after)
        .map(|(before, after)| after.cpu_seconds - before.cpu_seconds);
    (output, spent)
}

/// The inodes of the sockets in a /proc/net/tcp{,6} `table` listening on
/// `port` at one of `addresses` or at the unspecified address.
fn listening_inodes(table: &str, addresses: &[IpAddr], port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let (ip, listening_port) = local.split_once(':')?;
            let ip = kernel_ip(ip)?;
            let wanted = *state == LISTEN
                && u16::from_str_radix(listening_port, 16).ok()? == port
                && (ip.is_unspecified() || addresses.contains(&ip));
            wanted.then(|| inode.parse().ok()).flatten()
        })
        .collect()
}

/// An address as /proc/net/tcp prints it: the bytes in network order, each
/// 32-bit word printed as a host-order number (little-endian here).
fn kernel_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let word = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(word.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Three sockets on 5672 (the broker's listener, a client connection to
    // it, another node's listener on 5673) and one on every address.
    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   8: 0100007F:1628 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 6850 1 0000000064b4cd53 100 0 0 10 0
   9: 0100007F:1629 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 6851 1 0000000064b4cd53 100 0 0 10 0
  10: 0100007F:D2F0 0100007F:1628 01 00000000:00000000 00:00000000 00000000     0        0 7000 1 0000000064b4cd53 20 4 30 10 -1
  11: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7100 1 0000000064b4cd53 100 0 0 10 0
";

    #[test]
    fn finds_the_listener_on_the_url_address_only() {
        let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        assert_eq!(listening_inodes(TABLE, &loopback, 5672), [6850]);
        assert_eq!(listening_inodes(TABLE, &loopback, 5673), [6851]);
        // Another address on the same port is another node.
        let other = [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))];
        assert!(listening_inodes(TABLE, &other, 5672).is_empty());
        // A listener on 0.0.0.0 answers on every address.
        assert_eq!(listening_inodes(TABLE, &other, 8080), [7100]);
    }

    #[test]
    fn reads_kernel_addresses() {
        assert_eq!(kernel_ip("0100007F"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(
            kernel_ip("00000000000000000000000001000000"),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(kernel_ip("0100"), None);
    }
}
