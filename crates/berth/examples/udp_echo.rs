//! Test fixture, not part of berth: a static UDP echo server (`udp_echo PORT`) that tests
//! bind-mount into busybox containers, whose busybox has no UDP server.

use std::net::UdpSocket;

fn main() {
    let port = std::env::args().nth(1).unwrap_or_else(|| "7777".into());
    let sock = match UdpSocket::bind(format!("0.0.0.0:{port}")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp_echo: bind {port}: {e}");
            std::process::exit(1);
        }
    };
    let mut buf = [0u8; 2048];
    while let Ok((n, peer)) = sock.recv_from(&mut buf) {
        let mut reply = b"echo:".to_vec();
        reply.extend_from_slice(&buf[..n]);
        let _ = sock.send_to(&reply, peer);
    }
}
