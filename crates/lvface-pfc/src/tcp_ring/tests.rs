use super::*;

use std::net::TcpStream;

const TOKEN: &str = "a run token for the tests";

/// Rank `rank` of `world`, joining the rendezvous on `master_port` with `token`.
fn config(rank: usize, world: usize, master_port: u16, token: &str) -> RingConfig {
    RingConfig {
        rank,
        world,
        master_addr: "127.0.0.1".into(),
        master_port,
        node_addr: "127.0.0.1".into(),
        data_port: 0,
        bind_addr: None,
        token: RunToken::new(token).unwrap(),
        timeout: Duration::from_secs(20),
    }
}

/// A listener for rank 0's rendezvous, and its port.
fn rendezvous() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Runs `body` on `world` ranks joined in one ring over loopback, one thread each; `before`
/// runs once the rendezvous listens and before any rank joins.
fn ring_after<T: Send>(
    world: usize,
    before: impl FnOnce(u16),
    body: impl Fn(TcpRing) -> T + Sync,
) -> Vec<T> {
    let (listener, master_port) = rendezvous();
    before(master_port);
    let mut listener = Some(listener);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let listener = listener.take().filter(|_| rank == 0);
                let body = &body;
                scope.spawn(move || {
                    let config = config(rank, world, master_port, TOKEN);
                    body(TcpRing::join_with(&config, listener).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Runs `body` on `world` ranks joined in one ring over loopback, one thread each.
fn ring<T: Send>(world: usize, body: impl Fn(TcpRing) -> T + Sync) -> Vec<T> {
    ring_after(world, |_| {}, body)
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
    let (listener, port) = rendezvous();
    let (zero, one) = std::thread::scope(|scope| {
        let zero = scope.spawn(|| TcpRing::join_with(&config(0, 2, port, TOKEN), Some(listener)));
        let one = scope.spawn(|| TcpRing::join_with(&config(1, 3, port, TOKEN), None));
        (zero.join().unwrap(), one.join().unwrap())
    });
    let err = zero.unwrap_err().to_string();
    assert!(err.contains("WORLD_SIZE=3"), "{err}");
    let err = one.unwrap_err().to_string();
    assert!(err.contains("WORLD_SIZE=3"), "{err}");
}

/// A connection that says nothing, one that sends garbage, one that claims a 1 GB host name
/// and one that closes at once: the ring forms anyway, long before a silent connection's
/// handshake times out.
#[test]
fn strangers_at_the_rendezvous_neither_block_nor_break_it() {
    let mut strangers = Vec::new();
    let start = Instant::now();
    let results = ring_after(
        2,
        |port| {
            let connect = || TcpStream::connect(("127.0.0.1", port)).unwrap();
            strangers.push(connect());
            let mut garbage = connect();
            garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            strangers.push(garbage);
            let mut huge = connect();
            let mut report = Vec::new();
            write_u32(&mut report, MAGIC);
            write_u32(&mut report, VERSION);
            report.extend_from_slice(&[0; 16]);
            write_u32(&mut report, 1);
            write_u32(&mut report, 2);
            write_u32(&mut report, 1 << 30);
            huge.write_all(&report).unwrap();
            strangers.push(huge);
            drop(connect());
        },
        |mut ring| {
            let mut data = vec![ring.rank as f32 + 1.0; 10];
            ring.all_reduce_sum(&mut data).unwrap();
            data
        },
    );
    assert_eq!(results, vec![vec![3.0; 10]; 2]);
    assert!(
        start.elapsed() < crate::rendezvous::HANDSHAKE_TIMEOUT,
        "joining took {:?}",
        start.elapsed()
    );
    drop(strangers);
}

/// A rank with another token is turned away at once with a message that says so; rank 0 goes
/// on waiting for a rank with the right one, and when none comes, its error lists the refusal.
#[test]
fn a_rank_with_another_token_is_refused() {
    let (listener, port) = rendezvous();
    let mut zero_config = config(0, 2, port, TOKEN);
    zero_config.timeout = Duration::from_secs(3);
    let (zero, one) = std::thread::scope(|scope| {
        let zero = scope.spawn(|| TcpRing::join_with(&zero_config, Some(listener)));
        let one = scope.spawn(|| {
            let start = Instant::now();
            let joined = TcpRing::join_with(&config(1, 2, port, "another token, as long"), None);
            (joined, start.elapsed())
        });
        (zero.join().unwrap(), one.join().unwrap())
    });
    let (one, took) = one;
    let err = one.unwrap_err().to_string();
    assert!(err.contains("run token differs"), "{err}");
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    let err = zero.unwrap_err().to_string();
    assert!(err.contains("did not connect in time"), "{err}");
    assert!(err.contains("rank 1 with a wrong run token"), "{err}");
}

/// Something that is not lvface's rendezvous (here a server that answers nothing useful) holds
/// MASTER_PORT: a rank says so instead of taking its answer.
#[test]
fn a_rendezvous_without_the_token_is_not_believed() {
    let (listener, port) = rendezvous();
    let impostor = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(&MAGIC.to_le_bytes()).unwrap();
        stream.write_all(&VERSION.to_le_bytes()).unwrap();
        stream.write_all(&[7; 16]).unwrap();
        let mut report = [0; 8 + 16 + 8 + 4 + 9 + 4 + 32];
        stream.read_exact(&mut report).unwrap();
        // Status 0 and a table of two ranks, signed with nothing.
        let mut answer = vec![0u8];
        for _ in 0..2 {
            write_u32(&mut answer, 9);
            answer.extend_from_slice(b"127.0.0.1");
            write_u32(&mut answer, 1);
        }
        answer.extend_from_slice(&[0; 32]);
        stream.write_all(&answer).unwrap();
    });
    let err = TcpRing::join_with(&config(1, 2, port, TOKEN), None)
        .unwrap_err()
        .to_string();
    impostor.join().unwrap();
    assert!(err.contains("without this run's token"), "{err}");
}

/// Rank 1 of three goes away after one all-reduce, as a killed process does (its sockets
/// close): both other ranks name rank 1, rank 2 because its connection from rank 1 broke,
/// rank 0 because rank 2 says so. Small calls and calls sent from a second thread alike.
#[test]
fn the_ranks_left_name_the_rank_that_is_gone() {
    for len in [10, 5000] {
        let results = ring(3, |mut ring| {
            let mut data = vec![1.0; len];
            ring.all_reduce_sum(&mut data).unwrap();
            assert_eq!(data, vec![3.0; len]);
            if ring.rank == 1 {
                drop(ring);
                return None;
            }
            Some(ring.all_reduce_sum(&mut data).unwrap_err())
        });
        for (rank, fault) in results.into_iter().enumerate() {
            match fault {
                None => assert_eq!(rank, 1),
                Some(RingFault::Lost { rank: gone, how }) => {
                    assert_eq!(gone, 1, "rank {rank}, len {len}: {how}")
                }
                Some(other) => panic!("rank {rank}, len {len}: {other}"),
            }
        }
    }
}
