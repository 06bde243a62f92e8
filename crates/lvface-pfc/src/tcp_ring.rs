//! [`TcpRing`]: a ring all-reduce (sum, f32) between processes over plain TCP sockets, the
//! transport of [`BurnCollective::global`](crate::BurnCollective::global).
//!
//! burn-collective 0.21's own global mode (WebSocket, through its orchestrator) stalls in the
//! second all-reduce of every run: `SyncService::sync` (`src/global/node/sync.rs:71-79`) clears a
//! copy of its list of synced peers instead of the list, so from the second sync on the list never
//! equals the set of nodes again (see `docs/distributed.md`). This module replaces it.
//!
//! Joining: every rank listens on its data port, then reports `(rank, world, host, port)` to the
//! rendezvous that rank 0 runs on `MASTER_ADDR:MASTER_PORT`; once all `world` ranks have reported,
//! rank 0 answers each with the table of every rank's address, and each rank connects to the next
//! rank of the ring and accepts the connection of the previous one.
//!
//! All-reduce of `n` elements on `W` ranks: the buffer is cut into `W` chunks; `W - 1` steps of
//! reduce-scatter (send a chunk to the next rank, add the one received from the previous), then
//! `W - 1` steps of all-gather (pass the reduced chunks around). Each rank sends
//! `2·(W-1)/W · n` elements. Every chunk is summed once and then copied, so all ranks get the same
//! bits. Each message carries the call's sequence number and length, so ranks that issue
//! different calls get an error instead of wrong sums.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::rendezvous::{
    connect, invalid, read_array, read_challenge, read_opening, read_u32, report_to_rendezvous,
    send_challenge, serve_rendezvous, write_u32, Gate, Report, HANDSHAKE_TIMEOUT, MAGIC, VERSION,
};
use crate::run_token::{RunToken, MAC_BYTES};

/// How long joining waits for the other ranks (the rendezvous, the ring's connections).
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Messages at most this long are written before reading; longer ones from a second thread, so
/// that two ranks sending to each other cannot both block on full socket buffers.
const INLINE_BYTES: usize = 4096;
/// The call number of a frame that tells the next rank the ring is broken, because the rank in
/// its `total` field is gone.
const ABORT_LOST: u64 = u64::MAX;
/// The same, because the rank in `total` stopped on an error of its own.
const ABORT_FAILED: u64 = u64::MAX - 1;
/// How long a failing rank waits to finish the message it is sending before it tells the next
/// rank why the ring stops.
const ABORT_GRACE: Duration = Duration::from_secs(5);

/// Where a rank joins the ring.
#[derive(Debug, Clone)]
pub(crate) struct RingConfig {
    pub rank: usize,
    pub world: usize,
    /// Host of rank 0's rendezvous.
    pub master_addr: String,
    /// Port of rank 0's rendezvous.
    pub master_port: u16,
    /// Host the other ranks reach this one at.
    pub node_addr: String,
    /// Port this rank listens on for the previous rank of the ring (0: any free port).
    pub data_port: u16,
    /// The address both listeners bind; `None`: the rendezvous binds `master_addr`, the data
    /// port `node_addr`.
    pub bind_addr: Option<String>,
    /// The run's shared secret.
    pub token: RunToken,
    /// How long to wait for the others while joining.
    pub timeout: Duration,
}

/// Why an all-reduce on the ring failed.
#[derive(Debug)]
pub(crate) enum RingFault {
    /// The connection to `rank` closed or broke: its process stopped or was killed, or its node
    /// cannot be reached. `how` says who saw it and how.
    Lost { rank: usize, how: String },
    /// `rank` stopped the ring on an error of its own.
    Failed { rank: usize, reason: String },
}

impl std::fmt::Display for RingFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingFault::Lost { rank, how } => write!(f, "rank {rank} is gone ({how})"),
            RingFault::Failed { rank, reason } => write!(f, "rank {rank} failed: {reason}"),
        }
    }
}

/// One rank's connections in the ring.
#[derive(Debug)]
pub(crate) struct TcpRing {
    rank: usize,
    world: usize,
    /// To rank `rank + 1`.
    next: TcpStream,
    /// From rank `rank - 1`.
    prev: TcpStream,
    /// All-reduces done so far.
    calls: u64,
    /// Set after a failed all-reduce: the ring is out of step and refuses further calls.
    broken: Option<String>,
    /// The message being sent.
    send_buffer: Vec<u8>,
    /// The bytes of the message received.
    recv_buffer: Vec<u8>,
}

fn read_u64(stream: &mut impl Read) -> io::Result<u64> {
    Ok(u64::from_le_bytes(read_array(stream)?))
}

/// Whether `err` means the other end of the connection is gone.
fn is_disconnect(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

/// Binds `host:port` for `what`, with a message that says what to do when it cannot.
fn listen(host: &str, port: u16, what: &str) -> io::Result<TcpListener> {
    TcpListener::bind((host, port)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {host}:{port} for {what}: {e} (the address must be one of this                  machine's; set LVFACE_BIND_ADDR to listen on another, such as 0.0.0.0 behind                  NAT)"
            ),
        )
    })
}

impl TcpRing {
    /// Joins the ring described by `config`; rank 0 runs the rendezvous on
    /// `master_addr:master_port` (or `bind_addr`). Blocks until every rank has joined.
    pub(crate) fn join(config: &RingConfig) -> io::Result<Self> {
        let rendezvous = if config.rank == 0 {
            let host = config.bind_addr.as_ref().unwrap_or(&config.master_addr);
            Some(listen(
                host,
                config.master_port,
                "the rendezvous (MASTER_PORT)",
            )?)
        } else {
            None
        };
        Self::join_with(config, rendezvous)
    }

    /// [`join`](Self::join), with rank 0's rendezvous listener given (its port is
    /// `config.master_port`).
    pub(crate) fn join_with(
        config: &RingConfig,
        rendezvous: Option<TcpListener>,
    ) -> io::Result<Self> {
        let RingConfig { rank, world, .. } = *config;
        if world < 2 || rank >= world {
            return Err(invalid(format!(
                "a ring needs rank {rank} below a world of at least 2, got {world}"
            )));
        }
        let deadline = Instant::now() + config.timeout;
        let host = config.bind_addr.as_ref().unwrap_or(&config.node_addr);
        let listener = listen(
            host,
            config.data_port,
            &format!("rank {rank}'s ring traffic"),
        )?;
        let data_port = listener.local_addr()?.port();

        let server = rendezvous.map(|listener| {
            let token = config.token.clone();
            std::thread::spawn(move || serve_rendezvous(listener, world, token, deadline))
        });
        let report = Report {
            rank,
            world,
            host: config.node_addr.clone(),
            port: data_port,
        };
        let table = report_to_rendezvous(
            &config.master_addr,
            config.master_port,
            &report,
            &config.token,
            deadline,
        );
        if let Some(server) = server {
            let served = server
                .join()
                .unwrap_or_else(|_| Err(invalid("the rendezvous thread panicked".into())));
            // Rank 0's own failure explains more than what its report got back.
            served?;
        }
        let table = table?;

        // The previous rank proves it is one: it answers this rank's challenge with the token.
        let want = (rank + world - 1) % world;
        let token = config.token.clone();
        let mut gate = Gate::new(listener, move |stream| {
            let challenge = send_challenge(stream).map_err(|e| e.to_string())?;
            read_opening(stream)?;
            let received = (|| -> io::Result<_> {
                let from = read_u32(stream)?;
                let code: [u8; MAC_BYTES] = read_array(stream)?;
                Ok((from, code))
            })();
            let (from, code) = received.map_err(|e| format!("a broken greeting ({e})"))?;
            let (from_bytes, to_bytes) = (from.to_le_bytes(), (rank as u32).to_le_bytes());
            if !token.verify("ring", &[&challenge, &from_bytes, &to_bytes], &code) {
                return Err(format!("rank {from} with a wrong run token"));
            }
            if from as usize != want {
                return Err(format!("rank {from}, not the previous rank {want}"));
            }
            Ok(())
        })?;
        // Accept the previous rank while greeting the next one: every rank does both at once.
        let accepting = std::thread::spawn(move || gate.next(deadline));
        let next = rank + 1 - world * usize::from(rank + 1 == world);
        let (host, port) = &table[next];
        let mut stream = connect(host, *port, deadline)?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let challenge = read_challenge(
            &mut stream,
            &format!("rank {next}'s ring port {host}:{port}"),
        )?;
        let (from, to) = ((rank as u32).to_le_bytes(), (next as u32).to_le_bytes());
        let mut greeting = Vec::new();
        write_u32(&mut greeting, MAGIC);
        write_u32(&mut greeting, VERSION);
        greeting.extend_from_slice(&from);
        greeting.extend_from_slice(&config.token.mac("ring", &[&challenge, &from, &to]));
        stream.write_all(&greeting)?;
        stream.set_read_timeout(None)?;
        let next = stream;
        let (prev, ()) = accepting
            .join()
            .unwrap_or_else(|_| Err(invalid("the accepting thread panicked".into())))?;
        prev.set_read_timeout(None)?;
        Ok(Self {
            rank,
            world,
            next,
            prev,
            calls: 0,
            broken: None,
            send_buffer: Vec::new(),
            recv_buffer: Vec::new(),
        })
    }

    /// Replaces `data` with its element-wise sum over all ranks. Every rank must pass the same
    /// number of elements, in the same order of calls.
    ///
    /// When the ring breaks, the rank that sees it first tells the next one why before it
    /// closes its connections, and so on around the ring, so every rank names the same rank.
    pub(crate) fn all_reduce_sum(&mut self, data: &mut [f32]) -> Result<(), RingFault> {
        if let Some(why) = &self.broken {
            return Err(RingFault::Failed {
                rank: self.rank,
                reason: format!("the ring closed after an earlier all-reduce failed: {why}"),
            });
        }
        let call = self.calls;
        self.calls += 1;
        let result = self.ring_all_reduce(call, data);
        if let Err((fault, clean)) = &result {
            self.broken = Some(fault.to_string());
            if *clean {
                let (kind, rank) = match fault {
                    RingFault::Lost { rank, .. } => (ABORT_LOST, *rank),
                    RingFault::Failed { rank, .. } => (ABORT_FAILED, *rank),
                };
                let mut frame = Vec::with_capacity(24);
                frame.extend_from_slice(&kind.to_le_bytes());
                frame.extend_from_slice(&(rank as u64).to_le_bytes());
                frame.extend_from_slice(&0u64.to_le_bytes());
                let _ = self.next.set_write_timeout(Some(ABORT_GRACE));
                let _ = self.next.write_all(&frame);
            }
            // Close both connections: the neighbours' pending reads and writes fail instead of
            // waiting for a message that will not come.
            let _ = self.next.shutdown(Shutdown::Both);
            let _ = self.prev.shutdown(Shutdown::Both);
        }
        result.map_err(|(fault, _)| fault)
    }

    /// The ring all-reduce; on failure, also whether the connection to the next rank is at a
    /// message boundary (so an abort frame can follow).
    fn ring_all_reduce(&mut self, call: u64, data: &mut [f32]) -> Result<(), (RingFault, bool)> {
        let (rank, world) = (self.rank, self.world);
        let n = data.len();
        let chunk = |i: usize| (i * n / world)..((i + 1) * n / world);
        // Reduce-scatter: after step s, this rank's chunk (rank - s - 1) holds s + 2 ranks' sum.
        for step in 0..world - 1 {
            let send = chunk((rank + world - step) % world);
            let recv = chunk((rank + 2 * world - step - 1) % world);
            let got = self.exchange(call, n, &data[send], recv.len())?;
            for (mine, theirs) in data[recv].iter_mut().zip(got.chunks_exact(4)) {
                *mine += f32::from_le_bytes([theirs[0], theirs[1], theirs[2], theirs[3]]);
            }
        }
        // All-gather: this rank starts with the complete chunk (rank + 1).
        for step in 0..world - 1 {
            let send = chunk((rank + 1 + world - step) % world);
            let recv = chunk((rank + world - step) % world);
            let got = self.exchange(call, n, &data[send], recv.len())?;
            for (mine, theirs) in data[recv].iter_mut().zip(got.chunks_exact(4)) {
                *mine = f32::from_le_bytes([theirs[0], theirs[1], theirs[2], theirs[3]]);
            }
        }
        Ok(())
    }

    /// Sends `send` to the next rank while receiving `recv_len` elements from the previous one;
    /// returns their bytes (little-endian f32), in a buffer reused from call to call.
    fn exchange(
        &mut self,
        call: u64,
        total: usize,
        send: &[f32],
        recv_len: usize,
    ) -> Result<&[u8], (RingFault, bool)> {
        // The buffers keep their capacity: fresh multi-megabyte buffers for every step cost more
        // in page faults than the transfer itself.
        let message = &mut self.send_buffer;
        message.clear();
        message.reserve(24 + 4 * send.len());
        message.extend_from_slice(&call.to_le_bytes());
        message.extend_from_slice(&(total as u64).to_le_bytes());
        message.extend_from_slice(&(send.len() as u64).to_le_bytes());
        for value in send {
            message.extend_from_slice(&value.to_le_bytes());
        }
        let message = &*message;
        let (rank, world) = (self.rank, self.world);
        let (prev_rank, next_rank) = ((rank + world - 1) % world, (rank + 1) % world);
        let (next, prev) = (&mut self.next, &mut self.prev);
        let received = &mut self.recv_buffer;
        let mut receive = move || -> Result<(), RingFault> {
            let lost = |err: io::Error| {
                if is_disconnect(&err) {
                    RingFault::Lost {
                        rank: prev_rank,
                        how: format!(
                            "rank {rank} lost its connection from it at all-reduce #{call}: {err}"
                        ),
                    }
                } else {
                    RingFault::Failed {
                        rank,
                        reason: format!("reading from rank {prev_rank}: {err}"),
                    }
                }
            };
            let their_call = read_u64(prev).map_err(lost)?;
            let their_total = read_u64(prev).map_err(lost)?;
            let len = read_u64(prev).map_err(lost)?;
            if their_call == ABORT_LOST || their_call == ABORT_FAILED {
                let gone = their_total as usize;
                let heard = format!("rank {rank} heard so from rank {prev_rank}");
                return Err(if their_call == ABORT_LOST {
                    RingFault::Lost {
                        rank: gone,
                        how: heard,
                    }
                } else {
                    RingFault::Failed {
                        rank: gone,
                        reason: format!("see its output; {heard}"),
                    }
                });
            }
            if their_call != call || their_total != total as u64 || len != recv_len as u64 {
                return Err(RingFault::Failed {
                    rank,
                    reason: format!(
                        "rank {prev_rank} sent all-reduce #{their_call} of {their_total} \
                         elements, rank {rank} is at all-reduce #{call} of {total} elements: \
                         the ranks issue different collective calls"
                    ),
                });
            }
            received.resize(4 * recv_len, 0);
            prev.read_exact(received).map_err(lost)
        };
        let sent = |result: io::Result<()>| {
            result.map_err(|err| {
                if is_disconnect(&err) {
                    RingFault::Lost {
                        rank: next_rank,
                        how: format!(
                            "rank {rank} lost its connection to it at all-reduce #{call}: {err}"
                        ),
                    }
                } else {
                    RingFault::Failed {
                        rank,
                        reason: format!("writing to rank {next_rank}: {err}"),
                    }
                }
            })
        };
        if message.len() <= INLINE_BYTES {
            sent(next.write_all(message)).map_err(|fault| (fault, false))?;
            receive().map_err(|fault| (fault, true))?;
        } else {
            let unblock = next.try_clone().map_err(|e| {
                let reason = format!("cannot share the connection to rank {next_rank}: {e}");
                (RingFault::Failed { rank, reason }, false)
            })?;
            std::thread::scope(|scope| {
                let sender = scope.spawn(move || next.write_all(message));
                let received = receive();
                if received.is_err() {
                    // The next rank is normally reading this message and takes it whole; one
                    // that does not within the grace period is stuck, and the send is cut.
                    let waited = Instant::now();
                    while !sender.is_finished() && waited.elapsed() < ABORT_GRACE {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if !sender.is_finished() {
                        let _ = unblock.shutdown(Shutdown::Both);
                    }
                }
                let write = sender
                    .join()
                    .unwrap_or_else(|_| Err(invalid("the sending thread panicked".into())));
                let clean = write.is_ok();
                match (received, sent(write)) {
                    (Err(fault), _) => Err((fault, clean)),
                    (Ok(()), Err(fault)) => Err((fault, false)),
                    (Ok(()), Ok(())) => Ok(()),
                }
            })?;
        }
        Ok(&self.recv_buffer)
    }
}

#[cfg(test)]
mod tests;
