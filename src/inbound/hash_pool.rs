//! Password verification on a bounded pool: at most `limits.auth_hash_concurrency` argon2 or
//! bcrypt checks run at once, each on one of that many dedicated threads, so that the memory an
//! argon2 check allocates (19 MiB with the parameters `hash-password` writes) is paid at most
//! that many times however many clients send AUTH together — and, as each thread reuses its
//! own allocator arena, is not left behind in a dozen arenas either.
//!
//! Waiting is fair between source addresses: an address has one check at a time (its *turn*),
//! so a flood from a few addresses queues behind itself, not in front of everyone else; the
//! slots themselves are handed out first come, first served. Every wait is bounded
//! ([`SLOT_WAIT`]); past it the caller answers `454 4.7.0` and nothing was computed.
//!
//! Imports nothing of ours but the waiting gauge it keeps current.

use prometheus::IntGauge;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// The longest an AUTH waits for its address's turn, and then for a slot.
pub const SLOT_WAIT: Duration = Duration::from_secs(5);

/// No slot (or turn) came within [`SLOT_WAIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

struct Job {
    hash: String,
    password: String,
    answer: oneshot::Sender<bool>,
    /// Released by the worker when the check is done, even if the session went away.
    _slot: OwnedSemaphorePermit,
}

type Gate = Arc<tokio::sync::Mutex<()>>;

/// The pool; lives as long as the process.
pub struct HashPool {
    slots: Arc<Semaphore>,
    jobs: Mutex<mpsc::Sender<Job>>,
    turns: Arc<Mutex<HashMap<IpAddr, Gate>>>,
    waiting: IntGauge,
    /// [`SLOT_WAIT`], shorter in tests.
    wait: Duration,
}

/// An address's turn: the next check from the same address waits until this is dropped.
pub struct Turn {
    _guard: Option<OwnedMutexGuard<()>>,
    key: Option<IpAddr>,
    turns: Arc<Mutex<HashMap<IpAddr, Gate>>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self._guard = None;
        let Some(key) = self.key else { return };
        if let Ok(mut map) = self.turns.lock() {
            // Forget the address once nobody holds or waits for its gate (clones are only
            // made under this lock, so the count cannot grow behind our back).
            if map.get(&key).is_some_and(|g| Arc::strong_count(g) == 1) {
                map.remove(&key);
            }
        }
    }
}

/// Counts one waiter in the gauge for as long as it lives.
struct Waiting<'a>(&'a IntGauge);

impl<'a> Waiting<'a> {
    fn new(g: &'a IntGauge) -> Self {
        g.inc();
        Waiting(g)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Addresses that take turns together: one IPv4 address, or one IPv6 /64 (what one host or
/// one customer of a provider usually gets).
fn turn_key(ip: IpAddr) -> IpAddr {
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

impl HashPool {
    /// A pool of `threads` workers (at least one).
    pub fn new(threads: usize, waiting: IntGauge) -> HashPool {
        Self::with_wait(threads, SLOT_WAIT, waiting)
    }

    fn with_wait(threads: usize, wait: Duration, waiting: IntGauge) -> HashPool {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || worker(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-check thread");
            }
        }
        HashPool {
            slots: Arc::new(Semaphore::new(threads)),
            jobs: Mutex::new(tx),
            turns: Arc::new(Mutex::new(HashMap::new())),
            waiting,
            wait,
        }
    }

    /// Wait (at most [`SLOT_WAIT`]) for `ip`'s turn. Unix-socket peers (`None`) have no
    /// address and do not take turns.
    pub async fn turn(&self, ip: Option<IpAddr>) -> Result<Turn, Busy> {
        let key = ip.map(turn_key);
        let gate = key.and_then(|k| {
            let mut map = self.turns.lock().ok()?;
            Some(map.entry(k).or_default().clone())
        });
        let mut turn = Turn {
            _guard: None,
            key,
            turns: self.turns.clone(),
        };
        if let Some(gate) = gate {
            let _w = Waiting::new(&self.waiting);
            match tokio::time::timeout(self.wait, gate.lock_owned()).await {
                Ok(guard) => turn._guard = Some(guard),
                Err(_) => return Err(Busy),
            }
        }
        Ok(turn)
    }

    /// Check `password` against `hash` on a worker thread, once a slot is free (waiting at
    /// most [`SLOT_WAIT`]). `Ok(true)`: it matches.
    pub async fn verify(&self, hash: String, password: String) -> Result<bool, Busy> {
        let slot = {
            let _w = Waiting::new(&self.waiting);
            match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => return Err(Busy),
            }
        };
        let (answer, result) = oneshot::channel();
        let job = Job {
            hash,
            password,
            answer,
            _slot: slot,
        };
        let sent = self
            .jobs
            .lock()
            .map_err(|_| Busy)
            .and_then(|tx| tx.send(job).map_err(|_| Busy));
        if sent.is_err() {
            tracing::error!("no password-check thread is running");
            return Err(Busy);
        }
        // A worker that died mid-check answers nothing: never a match.
        Ok(result.await.unwrap_or(false))
    }
}

fn worker(jobs: &Mutex<mpsc::Receiver<Job>>) {
    // argon2's working memory, kept for the thread's life (see `verify_password_in`).
    let mut memory = Vec::new();
    loop {
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                // The pool is gone: the process is ending.
                Err(_) => return,
            },
            Err(_) => return,
        };
        let ok = crate::password::verify_password_in(&job.hash, &job.password, &mut memory);
        let _ = job.answer.send(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn pool(n: usize) -> HashPool {
        HashPool::new(n, IntGauge::new("w", "w").unwrap())
    }

    #[tokio::test]
    async fn verifies_off_the_async_threads() {
        let p = pool(1);
        let h = bcrypt::hash("pw", 4).unwrap();
        assert_eq!(p.verify(h.clone(), "pw".into()).await, Ok(true));
        assert_eq!(p.verify(h, "nope".into()).await, Ok(false));
    }

    #[tokio::test]
    async fn one_turn_per_address_and_forgotten_after() {
        let p = pool(1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t = p.turn(Some(a)).await.unwrap();
        // Another address goes ahead at once; the same address waits.
        assert!(p.turn(Some(b)).await.is_ok());
        let started = Instant::now();
        let waiter = tokio::spawn({
            let turns = p.turns.clone();
            async move {
                let gate = turns.lock().unwrap().get(&a).cloned().unwrap();
                let _g = gate.lock().await;
                started.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(t);
        assert!(waiter.await.unwrap() >= Duration::from_millis(50));
        // Nobody holds or waits: the address is forgotten.
        let _ = p.turn(Some(a)).await.unwrap();
        assert!(p.turns.lock().unwrap().is_empty());
    }

    #[test]
    fn ipv6_takes_turns_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(turn_key(a), turn_key(b));
        assert_ne!(turn_key(a), turn_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(turn_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[tokio::test]
    async fn waits_are_bounded() {
        let p = HashPool::with_wait(
            1,
            Duration::from_millis(100),
            IntGauge::new("w", "w").unwrap(),
        );
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        let _held = p.turn(Some(a)).await.unwrap();
        assert_eq!(p.turn(Some(a)).await.err(), Some(Busy));
        // Every slot taken: the next check gives up rather than queue for ever.
        let _slot = p.slots.clone().acquire_owned().await.unwrap();
        assert_eq!(p.verify("x".into(), "y".into()).await, Err(Busy));
        assert_eq!(p.waiting.get(), 0);
    }
}
