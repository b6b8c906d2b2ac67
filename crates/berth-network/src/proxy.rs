//! `berth userland-proxy`: one process per published port when the daemon runs with
//! `userland-proxy: true`, relaying what arrives on the host port (a socket the daemon bound and
//! passed as fd 3) to the container's address, as docker-proxy does. It runs apart from the daemon
//! and imports no other module of the crate: it never touches the nftables table, links or the
//! service's state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;

/// The descriptor the daemon hands over: the bound (and, for TCP, listening) host socket.
pub const LISTEN_FD: i32 = 3;

/// How long a UDP flow lives without traffic.
const UDP_IDLE: Duration = Duration::from_secs(90);

/// Run the proxy: `proto` is tcp or udp, `target` the container's address. Returns the exit code.
pub fn run(proto: &str, target: SocketAddr) -> i32 {
    // SAFETY: fd 3 was set up by the daemon for this process and nothing else here owns it;
    // fcntl checks it is open before it is wrapped.
    let fd = unsafe {
        if libc::fcntl(LISTEN_FD, libc::F_GETFD) < 0 {
            eprintln!("userland-proxy: no listening socket on fd {LISTEN_FD}");
            return 1;
        }
        OwnedFd::from_raw_fd(LISTEN_FD)
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("userland-proxy: {e}");
            return 1;
        }
    };
    let res = rt.block_on(async move {
        match proto {
            "tcp" => tcp(fd, target).await,
            "udp" => udp(fd, target).await,
            other => Err(std::io::Error::other(format!("unknown protocol {other}"))),
        }
    });
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("userland-proxy: {e}");
            1
        }
    }
}

async fn tcp(fd: OwnedFd, target: SocketAddr) -> std::io::Result<()> {
    let std_listener = std::net::TcpListener::from(fd);
    std_listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std_listener)?;
    loop {
        let (mut inbound, _) = match listener.accept().await {
            Ok(x) => x,
            // Out of descriptors and the like: keep serving the others.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

async fn udp(fd: OwnedFd, target: SocketAddr) -> std::io::Result<()> {
    let std_sock = std::net::UdpSocket::from(fd);
    std_sock.set_nonblocking(true)?;
    let host = Arc::new(UdpSocket::from_std(std_sock)?);
    // One socket towards the container per client, so replies find their way back.
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = host.recv_from(&mut buf).await?;
        let existing = flows.lock().await.get(&client).cloned();
        let up = match existing {
            Some(s) => s,
            None => {
                let s = Arc::new(UdpSocket::bind("0.0.0.0:0").await?);
                s.connect(target).await?;
                flows.lock().await.insert(client, s.clone());
                let (host, flows, s2) = (host.clone(), flows.clone(), s.clone());
                tokio::spawn(async move {
                    let mut b = vec![0u8; 65536];
                    while let Ok(Ok(m)) = tokio::time::timeout(UDP_IDLE, s2.recv(&mut b)).await {
                        if host.send_to(&b[..m], client).await.is_err() {
                            break;
                        }
                    }
                    flows.lock().await.remove(&client);
                });
                s
            }
        };
        let _ = up.send(&buf[..n]).await;
    }
}
