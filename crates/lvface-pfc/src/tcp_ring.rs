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

/// How long joining waits for the other ranks (the rendezvous, the ring's connections).
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Sent first on every rendezvous and ring connection.
const MAGIC: u32 = u32::from_le_bytes(*b"LVFR");
/// Bumped when the wire format changes.
const VERSION: u32 = 1;
/// Messages at most this long are written before reading; longer ones from a second thread, so
/// that two ranks sending to each other cannot both block on full socket buffers.
const INLINE_BYTES: usize = 4096;

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
    /// How long to wait for the others while joining.
    pub timeout: Duration,
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
    broken: bool,
    /// The message being sent.
    send_buffer: Vec<u8>,
    /// The bytes of the message received.
    recv_buffer: Vec<u8>,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn write_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    write_u32(out, text.len() as u32);
    out.extend_from_slice(text.as_bytes());
}

fn read_u32(stream: &mut impl Read) -> io::Result<u32> {
    let mut bytes = [0; 4];
    stream.read_exact(&mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

fn read_u64(stream: &mut impl Read) -> io::Result<u64> {
    let mut bytes = [0; 8];
    stream.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

fn read_str(stream: &mut impl Read) -> io::Result<String> {
    let len = read_u32(stream)? as usize;
    if len > 4096 {
        return Err(invalid(format!("a {len}-byte name is not a host")));
    }
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| invalid("a host name is not UTF-8".into()))
}

/// Connects to `host:port`, retrying until `deadline` (the other side may not listen yet).
fn connect(host: &str, port: u16, deadline: Instant) -> io::Result<TcpStream> {
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

/// Accepts one connection on `listener` before `deadline`.
fn accept(listener: &TcpListener, deadline: Instant) -> io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the other ranks did not connect in time",
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => return Err(err),
        }
    };
    listener.set_nonblocking(false)?;
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sets a read timeout that ends at `deadline` (at least a millisecond).
fn read_until(stream: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))
}

/// Rank 0's rendezvous: accepts `world` reports, checks them, answers each with the table of
/// every rank's `(host, port)`.
fn serve_rendezvous(listener: TcpListener, world: usize, deadline: Instant) -> io::Result<()> {
    let mut reports: Vec<(TcpStream, usize, String, u16)> = Vec::with_capacity(world);
    while reports.len() < world {
        let mut stream = accept(&listener, deadline)?;
        read_until(&stream, deadline)?;
        let (magic, version) = (read_u32(&mut stream)?, read_u32(&mut stream)?);
        if magic != MAGIC || version != VERSION {
            // Not one of ours (a port scan, another program): ignore it.
            continue;
        }
        let rank = read_u32(&mut stream)? as usize;
        let their_world = read_u32(&mut stream)? as usize;
        let host = read_str(&mut stream)?;
        let port = read_u32(&mut stream)? as u16;
        let problem = if their_world != world {
            Some(format!(
                "rank {rank} says WORLD_SIZE={their_world}, rank 0 says {world}"
            ))
        } else if rank >= world || reports.iter().any(|r| r.1 == rank) {
            Some(format!("rank {rank} joined twice or is out of range"))
        } else {
            None
        };
        if let Some(problem) = problem {
            let mut answer = vec![1];
            write_str(&mut answer, &problem);
            for (mut other, ..) in reports.drain(..) {
                let _ = other.write_all(&answer);
            }
            let _ = stream.write_all(&answer);
            return Err(invalid(problem));
        }
        reports.push((stream, rank, host, port));
    }
    reports.sort_by_key(|r| r.1);
    let mut answer = vec![0];
    for (_, _, host, port) in &reports {
        write_str(&mut answer, host);
        write_u32(&mut answer, u32::from(*port));
    }
    for (stream, ..) in &mut reports {
        stream.write_all(&answer)?;
    }
    Ok(())
}

impl TcpRing {
    /// Joins the ring described by `config`; rank 0 runs the rendezvous on
    /// `0.0.0.0:master_port`. Blocks until every rank has joined.
    pub(crate) fn join(config: &RingConfig) -> io::Result<Self> {
        let rendezvous = if config.rank == 0 {
            let listener = TcpListener::bind(("0.0.0.0", config.master_port)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on MASTER_PORT={}: {e}", config.master_port),
                )
            })?;
            Some(listener)
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
        let listener = TcpListener::bind(("0.0.0.0", config.data_port)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "rank {rank} cannot listen on port {}: {e}",
                    config.data_port
                ),
            )
        })?;
        let data_port = listener.local_addr()?.port();

        let server = rendezvous.map(|listener| {
            std::thread::spawn(move || serve_rendezvous(listener, world, deadline))
        });

        // Report to the rendezvous and read every rank's address back.
        let table = (|| -> io::Result<Vec<(String, u16)>> {
            let mut stream = connect(&config.master_addr, config.master_port, deadline)?;
            let mut report = Vec::new();
            write_u32(&mut report, MAGIC);
            write_u32(&mut report, VERSION);
            write_u32(&mut report, rank as u32);
            write_u32(&mut report, world as u32);
            write_str(&mut report, &config.node_addr);
            write_u32(&mut report, u32::from(data_port));
            stream.write_all(&report)?;
            read_until(&stream, deadline)?;
            let mut status = [0];
            stream.read_exact(&mut status)?;
            if status[0] != 0 {
                return Err(invalid(read_str(&mut stream)?));
            }
            (0..world)
                .map(|_| Ok((read_str(&mut stream)?, read_u32(&mut stream)? as u16)))
                .collect()
        })();
        if let Some(server) = server {
            let served = server
                .join()
                .unwrap_or_else(|_| Err(invalid("the rendezvous thread panicked".into())));
            // Rank 0's own failure explains more than what its report got back.
            served?;
        }
        let table = table?;

        // The listener is bound already, so connecting completes before the next rank accepts.
        let (host, port) = &table[(rank + 1) % world];
        let mut next = connect(host, *port, deadline)?;
        let mut hello = Vec::new();
        write_u32(&mut hello, MAGIC);
        write_u32(&mut hello, rank as u32);
        next.write_all(&hello)?;
        let want = (rank + world - 1) % world;
        let prev = loop {
            let mut stream = accept(&listener, deadline)?;
            read_until(&stream, deadline)?;
            let greeting = read_u32(&mut stream).and_then(|m| Ok((m, read_u32(&mut stream)?)));
            match greeting {
                Ok((MAGIC, from)) if from as usize == want => break stream,
                // Not the previous rank: a stray connection. Keep waiting.
                _ => continue,
            }
        };
        prev.set_read_timeout(None)?;
        Ok(Self {
            rank,
            world,
            next,
            prev,
            calls: 0,
            broken: false,
            send_buffer: Vec::new(),
            recv_buffer: Vec::new(),
        })
    }

    /// Replaces `data` with its element-wise sum over all ranks. Every rank must pass the same
    /// number of elements, in the same order of calls.
    pub(crate) fn all_reduce_sum(&mut self, data: &mut [f32]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier all-reduce failed; the ring is closed",
            ));
        }
        let result = self.ring_all_reduce(data);
        if result.is_err() {
            // Close both connections: the neighbours' pending reads and writes fail instead of
            // waiting for a message that will not come.
            self.broken = true;
            let _ = self.next.shutdown(Shutdown::Both);
            let _ = self.prev.shutdown(Shutdown::Both);
        }
        result
    }

    fn ring_all_reduce(&mut self, data: &mut [f32]) -> io::Result<()> {
        let (rank, world) = (self.rank, self.world);
        let n = data.len();
        let call = self.calls;
        self.calls += 1;
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
    ) -> io::Result<&[u8]> {
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
        let (next, prev, rank, world) = (&mut self.next, &mut self.prev, self.rank, self.world);
        let received = &mut self.recv_buffer;
        let mut receive = move || -> io::Result<()> {
            let (their_call, their_total, len) =
                (read_u64(prev)?, read_u64(prev)?, read_u64(prev)? as usize);
            if their_call != call || their_total != total as u64 || len != recv_len {
                return Err(invalid(format!(
                    "rank {} sent all-reduce #{their_call} of {their_total} elements, rank {rank} \
                     is at all-reduce #{call} of {total} elements: the ranks issue different \
                     collective calls",
                    (rank + world - 1) % world
                )));
            }
            received.resize(4 * len, 0);
            prev.read_exact(received)
        };
        if message.len() <= INLINE_BYTES {
            next.write_all(message)?;
            receive()?;
        } else {
            let unblock = next.try_clone()?;
            std::thread::scope(|scope| {
                let sender = scope.spawn(move || next.write_all(message));
                let received = receive();
                if received.is_err() {
                    // The sender may be blocked on a neighbour that stopped reading.
                    let _ = unblock.shutdown(Shutdown::Both);
                }
                let sent = sender
                    .join()
                    .unwrap_or_else(|_| Err(invalid("the sending thread panicked".into())));
                received.and(sent)
            })?;
        }
        Ok(&self.recv_buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `body` on `world` ranks joined in one ring over loopback, one thread each.
    fn ring<T: Send>(world: usize, body: impl Fn(TcpRing) -> T + Sync) -> Vec<T> {
        let rendezvous = TcpListener::bind("127.0.0.1:0").unwrap();
        let master_port = rendezvous.local_addr().unwrap().port();
        let mut rendezvous = Some(rendezvous);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    let listener = rendezvous.take().filter(|_| rank == 0);
                    let body = &body;
                    scope.spawn(move || {
                        let config = RingConfig {
                            rank,
                            world,
                            master_addr: "127.0.0.1".into(),
                            master_port,
                            node_addr: "127.0.0.1".into(),
                            data_port: 0,
                            timeout: Duration::from_secs(20),
                        };
                        body(TcpRing::join_with(&config, listener).unwrap())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    fn values(rank: usize, call: usize, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((rank * 7919 + call * 104_729 + i * 31) % 1000) as f32 / 8.0 - 60.0)
            .collect()
    }

    #[test]
    fn sums_many_calls_of_changing_sizes_on_two_to_five_ranks() {
        // Lengths below, at and above the world size, an empty one, and one long enough to be
        // sent from a second thread.
        let lens = [0, 1, 2, 3, 5, 8, 13, 1000, 40_000, 7];
        for world in 2..=5 {
            let results = ring(world, |mut ring| {
                lens.iter()
                    .enumerate()
                    .map(|(call, &len)| {
                        let mut data = values(ring.rank, call, len);
                        ring.all_reduce_sum(&mut data).unwrap();
                        data
                    })
                    .collect::<Vec<_>>()
            });
            for (call, &len) in lens.iter().enumerate() {
                let inputs: Vec<Vec<f32>> = (0..world).map(|r| values(r, call, len)).collect();
                let want: Vec<f32> = (0..len)
                    .map(|i| inputs.iter().map(|v| v[i]).sum())
                    .collect();
                for (rank, got) in results.iter().enumerate() {
                    // The values are multiples of 1/8 well inside f32's exact range: any order
                    // of summation gives the same bits.
                    assert_eq!(got[call], want, "world {world}, rank {rank}, call {call}");
                }
            }
        }
    }

    #[test]
    fn every_rank_gets_the_same_bits() {
        let results = ring(3, |mut ring| {
            let mut data: Vec<f32> = (0..100)
                .map(|i| 0.1 * (i as f32 + 1.0) / (ring.rank as f32 + 3.0))
                .collect();
            ring.all_reduce_sum(&mut data).unwrap();
            data
        });
        let bits = |v: &Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&results[0]), bits(&results[1]));
        assert_eq!(bits(&results[0]), bits(&results[2]));
    }

    #[test]
    fn ranks_that_issue_different_calls_get_an_error() {
        let results = ring(2, |mut ring| {
            let len = 3 + ring.rank;
            let mut data = vec![1.0; len];
            ring.all_reduce_sum(&mut data).map_err(|e| e.to_string())
        });
        for result in results {
            let err = result.unwrap_err();
            assert!(err.contains("different collective calls"), "{err}");
        }
    }

    #[test]
    fn a_rank_with_another_world_size_is_refused() {
        let rendezvous = TcpListener::bind("127.0.0.1:0").unwrap();
        let master_port = rendezvous.local_addr().unwrap().port();
        let config = |rank, world| RingConfig {
            rank,
            world,
            master_addr: "127.0.0.1".into(),
            master_port,
            node_addr: "127.0.0.1".into(),
            data_port: 0,
            timeout: Duration::from_secs(20),
        };
        let (zero, one) = std::thread::scope(|scope| {
            let zero = scope.spawn(|| TcpRing::join_with(&config(0, 2), Some(rendezvous)));
            let one = scope.spawn(|| TcpRing::join_with(&config(1, 3), None));
            (zero.join().unwrap(), one.join().unwrap())
        });
        let err = zero.unwrap_err().to_string();
        assert!(err.contains("WORLD_SIZE=3"), "{err}");
        let err = one.unwrap_err().to_string();
        assert!(err.contains("WORLD_SIZE=3"), "{err}");
    }
}
