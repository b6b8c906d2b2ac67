//! Message channel between the runtime and the processes it forks (SOCK_SEQPACKET, fd passing).

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, ExecErrorKind};

/// Messages exchanged during create/exec.
#[derive(Debug)]
pub(crate) enum Msg {
    /// runtime → init: namespaces mapped and cgroups joined; carries the init's host pid.
    Go(i32),
    /// runtime → init, before `Go` in a user namespace: the detached clone of the source of
    /// the bind that is spec mount number n travels with it.
    Bind(u32),
    /// intermediate → runtime: host pid of the process it cloned.
    Pid(i32),
    /// init → runtime: set up and waiting for start (the PTY master travels with it if any).
    Ready,
    /// child → runtime: setup failed.
    Fail(String),
    /// child → runtime: execve failed.
    ExecFail(ExecErrorKind, String),
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Go(p) => [&b"G"[..], &p.to_le_bytes()].concat(),
            Msg::Pid(p) => [&b"P"[..], &p.to_le_bytes()].concat(),
            Msg::Bind(n) => [&b"B"[..], &n.to_le_bytes()].concat(),
            Msg::Ready => b"R".to_vec(),
            Msg::Fail(m) => [b"E", truncate(m)].concat(),
            Msg::ExecFail(k, m) => [&[b'X', k.to_byte()][..], truncate(m)].concat(),
        }
    }

    /// Decode a message; an empty buffer (EOF) is `None`.
    pub(crate) fn decode(buf: &[u8]) -> Option<Msg> {
        let (&tag, rest) = buf.split_first()?;
        let int = |r: &[u8]| -> i32 {
            let mut b = [0u8; 4];
            let n = r.len().min(4);
            b[..n].copy_from_slice(&r[..n]);
            i32::from_le_bytes(b)
        };
        Some(match tag {
            b'G' => Msg::Go(int(rest)),
            b'P' => Msg::Pid(int(rest)),
            b'B' => Msg::Bind(int(rest) as u32),
            b'R' => Msg::Ready,
            b'X' => {
                let (k, m) = rest.split_first().unwrap_or((&b'o', &[]));
                Msg::ExecFail(
                    ExecErrorKind::from_byte(*k),
                    String::from_utf8_lossy(m).into_owned(),
                )
            }
            _ => Msg::Fail(String::from_utf8_lossy(rest).into_owned()),
        })
    }

    /// Turn a failure message into the runtime error it stands for.
    pub(crate) fn into_error(self) -> Error {
        match self {
            Msg::ExecFail(kind, message) => Error::Exec { kind, message },
            Msg::Fail(m) => Error::Init(m),
            other => Error::Init(format!("unexpected message from child: {other:?}")),
        }
    }
}

/// Keep messages well under PIPE_BUF so a write to a FIFO is atomic.
fn truncate(m: &str) -> &[u8] {
    let b = m.as_bytes();
    &b[..b.len().min(3500)]
}

/// One end of a SOCK_SEQPACKET socketpair (close-on-exec).
pub(crate) struct Channel {
    fd: OwnedFd,
}

impl Channel {
    pub(crate) fn pair() -> Result<(Channel, Channel), Error> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds is a valid out array of two ints.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if r < 0 {
            return Err(Error::sys(
                "socketpair",
                "AF_UNIX, SOCK_SEQPACKET",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: socketpair returned two new descriptors that we now own.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(crate) fn send(&self, msg: &Msg) -> io::Result<()> {
        send_with_fd(self.fd.as_fd(), &msg.encode(), None)
    }

    pub(crate) fn send_fd(&self, msg: &Msg, fd: BorrowedFd<'_>) -> io::Result<()> {
        send_with_fd(self.fd.as_fd(), &msg.encode(), Some(fd))
    }

    /// Receive one message (None on EOF) and a descriptor if one was attached.
    pub(crate) fn recv(&self) -> io::Result<(Option<Msg>, Option<OwnedFd>)> {
        let mut buf = vec![0u8; 4096];
        let (n, fd) = recv_with_fd(self.fd.as_fd(), &mut buf)?;
        Ok((Msg::decode(&buf[..n]), fd))
    }
}

/// sendmsg(2) with an optional SCM_RIGHTS descriptor. Works on any unix socket.
pub(crate) fn send_with_fd(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let space = {
        // SAFETY: CMSG_SPACE is a pure computation.
        unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize }
    };
    let mut cbuf = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: zeroed msghdr is a valid "empty" header.
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at a buffer of CMSG_SPACE(sizeof(int)) bytes, so the first
        // header and its data fit; we write exactly one int of data.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: msg references iov/cbuf which outlive the call.
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(());
    }
}

/// recvmsg(2) accepting one SCM_RIGHTS descriptor (received close-on-exec).
pub(crate) fn recv_with_fd(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE((size_of::<RawFd>() * 4) as u32) as usize };
    let mut cbuf = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr is a valid "empty" header.
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg references iov/cbuf which outlive the call.
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break r as usize;
    };
    let mut out = None;
    // SAFETY: we walk the control headers the kernel filled in, within msg_controllen, and take
    // ownership of every descriptor passed (keeping the first, closing any extra).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / size_of::<RawFd>() {
                    let fd = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i)));
                    if out.is_none() {
                        out = Some(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, out))
}
