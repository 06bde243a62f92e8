//! How the processes of a run find one another: rank 0's rendezvous, the wire encoding of the
//! handshakes, and [`Gate`], which lets in only connections that prove they belong to the run.
//!
//! Rendezvous, on `MASTER_ADDR:MASTER_PORT`:
//! 1. rank 0 → rank r: `MAGIC, VERSION, challenge`;
//! 2. rank r → rank 0: `MAGIC, VERSION, its challenge, rank, world, host, port, code`, the code
//!    over both challenges and the report;
//! 3. once all `world` ranks have reported, rank 0 → each: `status, body, code` over the rank's
//!    challenge and the answer; `body` is the table of every rank's `(host, port)` (status 0) or
//!    why the group cannot form (status 1). A report with a wrong code gets status 2 and a
//!    message, unsigned (its sender does not share the token); the rendezvous goes on without it.
//!
//! Every connection has [`HANDSHAKE_TIMEOUT`] to report, on a thread of its own, so a silent or
//! slow connection delays nobody; what was refused is listed when joining times out.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::run_token::{nonce, RunToken, MAC_BYTES, NONCE_BYTES};

/// Sent first on every rendezvous and ring connection.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"LVFR");
/// Bumped when the wire format changes.
pub(crate) const VERSION: u32 = 2;
/// How long a new connection has to finish its handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest host name (DNS's limit).
const MAX_HOST: usize = 255;
/// Handshakes in progress at once; further connections are closed at once.
const MAX_PENDING: usize = 64;
/// Refusals kept to explain a timeout.
const REFUSALS_KEPT: usize = 8;

const STATUS_OK: u8 = 0;
const STATUS_CONFLICT: u8 = 1;
const STATUS_REFUSED: u8 = 2;

pub(crate) fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

pub(crate) fn write_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    write_u32(out, text.len() as u32);
    out.extend_from_slice(text.as_bytes());
}

pub(crate) fn read_array<const N: usize>(stream: &mut impl Read) -> io::Result<[u8; N]> {
    let mut bytes = [0; N];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

pub(crate) fn read_u32(stream: &mut impl Read) -> io::Result<u32> {
    Ok(u32::from_le_bytes(read_array(stream)?))
}

/// A string of at most `limit` bytes; the length is checked before anything is allocated.
fn read_str(stream: &mut impl Read, limit: usize) -> io::Result<String> {
    let len = read_u32(stream)? as usize;
    if len > limit {
        return Err(invalid(format!(
            "a {len}-byte string where at most {limit} fit"
        )));
    }
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| invalid("a string is not UTF-8".into()))
}

/// The opening every accepting side sends: who it is and a fresh challenge.
pub(crate) fn send_challenge(stream: &mut TcpStream) -> io::Result<[u8; NONCE_BYTES]> {
    let challenge = nonce()?;
    let mut hello = Vec::with_capacity(8 + NONCE_BYTES);
    write_u32(&mut hello, MAGIC);
    write_u32(&mut hello, VERSION);
    hello.extend_from_slice(&challenge);
    stream.write_all(&hello)?;
    Ok(challenge)
}

/// Reads the opening of [`send_challenge`]; `what` names the other side in errors.
pub(crate) fn read_challenge(stream: &mut TcpStream, what: &str) -> io::Result<[u8; NONCE_BYTES]> {
    let (magic, version) = (read_u32(stream)?, read_u32(stream)?);
    if magic != MAGIC || version != VERSION {
        return Err(invalid(format!(
            "{what} does not answer as lvface (wire version {VERSION}) does: another program \
             listens there, or another version of lvface"
        )));
    }
    read_array(stream)
}

/// Reads and checks the `MAGIC, VERSION` that opens what a connecting side sends.
pub(crate) fn read_opening(stream: &mut TcpStream) -> Result<(), String> {
    let opening = read_u32(stream)
        .and_then(|magic| Ok((magic, read_u32(stream)?)))
        .map_err(|e| format!("no handshake ({e})"))?;
    match opening {
        (MAGIC, VERSION) => Ok(()),
        (MAGIC, version) => Err(format!("lvface wire version {version}, not {VERSION}")),
        _ => Err("not an lvface rank".into()),
    }
}

/// Connects to `host:port`, retrying until `deadline` (the other side may not listen yet).
pub(crate) fn connect(host: &str, port: u16, deadline: Instant) -> io::Result<TcpStream> {
    loop {
        match TcpStream::connect((host, port)) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(err) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    err.kind(),
                    format!("cannot connect to {host}:{port}: {err}"),
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Sets a read timeout that ends at `deadline` (at least a millisecond).
pub(crate) fn read_until(stream: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))
}

type Handshake<T> = dyn Fn(&mut TcpStream) -> Result<T, String> + Send + Sync;
/// A finished handshake: the peer, and its connection or why it was refused.
type Shaken<T> = (SocketAddr, Result<(TcpStream, T), String>);

/// Connections on a listener that have passed a handshake.
pub(crate) struct Gate<T> {
    listener: TcpListener,
    handshake: Arc<Handshake<T>>,
    done: (mpsc::Sender<Shaken<T>>, mpsc::Receiver<Shaken<T>>),
    pending: usize,
    refused: Vec<String>,
}

impl<T: Send + 'static> Gate<T> {
    /// Lets in connections on `listener` for which `handshake` (run with
    /// [`HANDSHAKE_TIMEOUT`] on reads and writes) returns `Ok`.
    pub(crate) fn new(
        listener: TcpListener,
        handshake: impl Fn(&mut TcpStream) -> Result<T, String> + Send + Sync + 'static,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            handshake: Arc::new(handshake),
            done: mpsc::channel(),
            pending: 0,
            refused: Vec::new(),
        })
    }

    /// The next connection to pass, waiting until `deadline`.
    pub(crate) fn next(&mut self, deadline: Instant) -> io::Result<(TcpStream, T)> {
        loop {
            while let Ok((peer, result)) = self.done.1.try_recv() {
                self.pending -= 1;
                match result {
                    Ok(passed) => return Ok(passed),
                    Err(why) => self.refuse(peer, why),
                }
            }
            if Instant::now() >= deadline {
                let refused = if self.refused.is_empty() {
                    String::new()
                } else {
                    format!(" (refused: {})", self.refused.join("; "))
                };
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the other ranks did not connect in time{refused}"),
                ));
            }
            match self.listener.accept() {
                Ok((stream, peer)) if self.pending >= MAX_PENDING => {
                    drop(stream);
                    self.refuse(peer, "too many handshakes at once".into());
                }
                Ok((stream, peer)) => {
                    self.pending += 1;
                    let handshake = Arc::clone(&self.handshake);
                    let done = self.done.0.clone();
                    std::thread::spawn(move || {
                        let result = shake(stream, &*handshake);
                        let _ = done.send((peer, result));
                    });
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                // The connection went away before it was accepted.
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(err) => return Err(err),
            }
        }
    }

    fn refuse(&mut self, peer: SocketAddr, why: String) {
        if self.refused.len() < REFUSALS_KEPT {
            self.refused.push(format!("{peer}: {why}"));
        }
    }
}

fn shake<T>(mut stream: TcpStream, handshake: &Handshake<T>) -> Result<(TcpStream, T), String> {
    let setup = (|| {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))
    })();
    setup.map_err(|e| e.to_string())?;
    let passed = handshake(&mut stream)?;
    stream.set_write_timeout(None).map_err(|e| e.to_string())?;
    Ok((stream, passed))
}

/// What a rank tells the rendezvous.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    pub rank: usize,
    pub world: usize,
    /// Where the other ranks reach this one.
    pub host: String,
    pub port: u16,
}

impl Report {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_u32(&mut bytes, self.rank as u32);
        write_u32(&mut bytes, self.world as u32);
        write_str(&mut bytes, &self.host);
        write_u32(&mut bytes, u32::from(self.port));
        bytes
    }

    fn read(stream: &mut impl Read) -> io::Result<Self> {
        let rank = read_u32(stream)? as usize;
        let world = read_u32(stream)? as usize;
        let host = read_str(stream, MAX_HOST)?;
        let port =
            u16::try_from(read_u32(stream)?).map_err(|_| invalid("a port above 65535".into()))?;
        Ok(Self {
            rank,
            world,
            host,
            port,
        })
    }
}

/// Rank 0's rendezvous: lets in `world` reports that carry the run's token, checks that they
/// form one group, and answers each with the table of every rank's `(host, port)`.
pub(crate) fn serve_rendezvous(
    listener: TcpListener,
    world: usize,
    token: RunToken,
    deadline: Instant,
) -> io::Result<()> {
    let check = token.clone();
    let mut gate = Gate::new(listener, move |stream| {
        let challenge = send_challenge(stream).map_err(|e| e.to_string())?;
        read_opening(stream)?;
        let received = (|| -> io::Result<_> {
            let theirs: [u8; NONCE_BYTES] = read_array(stream)?;
            let report = Report::read(stream)?;
            let code: [u8; MAC_BYTES] = read_array(stream)?;
            Ok((theirs, report, code))
        })();
        let (theirs, report, code) = received.map_err(|e| format!("a broken report ({e})"))?;
        if !check.verify("report", &[&challenge, &theirs, &report.encode()], &code) {
            let mut answer = vec![STATUS_REFUSED];
            write_str(
                &mut answer,
                "rank 0 refused this rank: its run token differs from rank 0's (every rank \
                 needs the same LVFACE_RUN_TOKEN or LVFACE_RUN_TOKEN_FILE)",
            );
            let _ = stream.write_all(&answer);
            return Err(format!("rank {} with a wrong run token", report.rank));
        }
        Ok((theirs, report))
    })?;

    let mut reports: Vec<(TcpStream, [u8; NONCE_BYTES], Report)> = Vec::with_capacity(world);
    while reports.len() < world {
        let (stream, (challenge, report)) = gate.next(deadline)?;
        let problem = if report.world != world {
            Some(format!(
                "rank {} says WORLD_SIZE={}, rank 0 says {world}",
                report.rank, report.world
            ))
        } else if report.rank >= world || reports.iter().any(|r| r.2.rank == report.rank) {
            Some(format!(
                "rank {} joined twice or is out of range",
                report.rank
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            let mut body = Vec::new();
            write_str(&mut body, &problem);
            reports.push((stream, challenge, report));
            for (mut stream, challenge, _) in reports {
                let _ = answer(&mut stream, &token, &challenge, STATUS_CONFLICT, &body);
            }
            return Err(invalid(problem));
        }
        reports.push((stream, challenge, report));
    }
    reports.sort_by_key(|r| r.2.rank);
    let mut table = Vec::new();
    for (_, _, report) in &reports {
        write_str(&mut table, &report.host);
        write_u32(&mut table, u32::from(report.port));
    }
    for (stream, challenge, _) in &mut reports {
        answer(stream, &token, challenge, STATUS_OK, &table)?;
    }
    Ok(())
}

fn answer(
    stream: &mut TcpStream,
    token: &RunToken,
    challenge: &[u8],
    status: u8,
    body: &[u8],
) -> io::Result<()> {
    let mut message = vec![status];
    message.extend_from_slice(body);
    let code = token.mac("answer", &[challenge, &message]);
    message.extend_from_slice(&code);
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.write_all(&message)
}

/// Reports `report` to the rendezvous at `host:port` and returns every rank's `(host, port)`,
/// in rank order, once all have reported (waiting until `deadline`).
pub(crate) fn report_to_rendezvous(
    host: &str,
    port: u16,
    report: &Report,
    token: &RunToken,
    deadline: Instant,
) -> io::Result<Vec<(String, u16)>> {
    let mut stream = connect(host, port, deadline)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let what = format!("the rendezvous at {host}:{port}");
    let challenge = read_challenge(&mut stream, &what)?;
    let mine = nonce()?;
    let body = report.encode();
    let mut message = Vec::new();
    write_u32(&mut message, MAGIC);
    write_u32(&mut message, VERSION);
    message.extend_from_slice(&mine);
    message.extend_from_slice(&body);
    message.extend_from_slice(&token.mac("report", &[&challenge, &mine, &body]));
    stream.write_all(&message)?;

    // The answer comes once every rank has reported, which may take until the deadline.
    read_until(&stream, deadline)?;
    let [status] = read_array(&mut stream)?;
    let mut answer = vec![status];
    let (table, conflict) = match status {
        STATUS_OK => {
            let mut table = Vec::with_capacity(report.world);
            for _ in 0..report.world {
                let host = read_str(&mut stream, MAX_HOST)?;
                let port = u16::try_from(read_u32(&mut stream)?)
                    .map_err(|_| invalid("a port above 65535".into()))?;
                write_str(&mut answer, &host);
                write_u32(&mut answer, u32::from(port));
                table.push((host, port));
            }
            (table, None)
        }
        STATUS_CONFLICT => {
            let problem = read_str(&mut stream, 4096)?;
            write_str(&mut answer, &problem);
            (Vec::new(), Some(problem))
        }
        STATUS_REFUSED => return Err(invalid(read_str(&mut stream, 4096)?)),
        other => return Err(invalid(format!("{what} answered with status {other}"))),
    };
    let code: [u8; MAC_BYTES] = read_array(&mut stream)?;
    if !token.verify("answer", &[&mine, &answer], &code) {
        return Err(invalid(format!(
            "{what} answered without this run's token: another program, or a run with another \
             LVFACE_RUN_TOKEN, holds the port"
        )));
    }
    match conflict {
        Some(problem) => Err(invalid(problem)),
        None => Ok(table),
    }
}
