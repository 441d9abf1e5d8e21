//! Crash test: a child process (this test binary re-executed) appends on one thread and
//! drains on another while the parent `kill -9`s it at random moments. After every kill the
//! parent recovers the spool and checks, against the child's own log of what returned Ok:
//! every acknowledged append is present unless its ack was confirmed; nothing confirmed as
//! acked comes back; the only records seen before are the last peeked-but-unacked batch;
//! appends are all-or-nothing; order is kept; nothing is corrupt.
//!
//! Three kinds of kill: while it works (at a random moment); while its consumer holds a
//! peeked batch it has not acked (that batch must come back, whole); and during recovery
//! (the child says when it enters and leaves `Spool::open`; kills that land inside are
//! counted, and at least one must). The totals of confirmed appends, acks and replays
//! must all be above zero.
//!
//! Trials: `LOCKSTEP_CRASH_TRIALS` (default 25). kill -9 keeps the page cache, so this proves
//! process-crash safety; power loss is `power_loss.rs`, damage `corruption.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Rng;
use lockstep_spool::{FullPolicy, Spool, SpoolConfig, SyncMode};

const CHILD_ENV: &str = "LOCKSTEP_SPOOL_CRASH_CHILD";

type Id = (u64, u64); // (batch, index)

fn child_cfg(interval: bool) -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 16 * 1024,
        max_bytes: 64 << 20,
        full_policy: FullPolicy::Block,
        sync: if interval {
            SyncMode::Interval(Duration::from_millis(3))
        } else {
            SyncMode::Always
        },
        max_record_bytes: 1 << 20,
    }
}

fn batch_len(b: u64) -> u64 {
    1 + b % 8
}

fn rec_payload(b: u64, i: u64) -> Vec<u8> {
    let mut p = format!("{b}:{i}:{}:", batch_len(b)).into_bytes();
    p.resize(40 + ((b * 31 + i * 17) % 200) as usize, b'.');
    p
}

fn parse_payload(p: &[u8]) -> (Id, u64) {
    let s = String::from_utf8_lossy(p);
    let mut it = s.split(':');
    let b: u64 = it.next().unwrap().parse().unwrap();
    let i: u64 = it.next().unwrap().parse().unwrap();
    let k: u64 = it.next().unwrap().parse().unwrap();
    assert_eq!(p, &rec_payload(b, i)[..], "payload altered");
    ((b, i), k)
}

fn id_str(id: Id) -> String {
    format!("{}:{}", id.0, id.1)
}

fn parse_id(s: &str) -> Id {
    let (a, b) = s.split_once(':').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// The child: runs until killed.
#[test]
#[ignore = "child process of crash_kill9_trials; runs only when re-executed by it"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var("CRASH_START").unwrap().parse().unwrap();
    let seed: u64 = std::env::var("CRASH_SEED").unwrap().parse().unwrap();
    let interval = std::env::var("CRASH_INTERVAL").is_ok();
    // Hold mode: at this non-empty peek, print it and never ack.
    let hold_at: Option<u64> = std::env::var("CRASH_HOLD").ok().map(|v| v.parse().unwrap());
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let say = {
        let out = out.clone();
        move |line: String| {
            let mut o = out.lock().unwrap();
            writeln!(o, "{line}").unwrap();
            o.flush().unwrap();
        }
    };
    say("\nR".into()); // own line, after libtest's "test crash_child ... "
    let t = Instant::now();
    let spool = std::sync::Arc::new(Spool::open(&dir, child_cfg(interval)).unwrap());
    say(format!("O {}", t.elapsed().as_micros()));
    let appender = {
        let spool = spool.clone();
        let say = say.clone();
        std::thread::spawn(move || {
            let mut b = start;
            loop {
                let recs: Vec<Vec<u8>> = (0..batch_len(b)).map(|i| rec_payload(b, i)).collect();
                say(format!("S {b}"));
                loop {
                    match spool.append(&recs) {
                        Ok(_) => break,
                        Err(lockstep_spool::SpoolError::Full { .. }) => {
                            std::thread::sleep(Duration::from_millis(1))
                        }
                        Err(e) => panic!("append: {e}"),
                    }
                }
                say(format!("A {b}"));
                b += 1;
            }
        })
    };
    let mut rng = Rng(seed | 1);
    let mut peeks = 0u64;
    loop {
        let b = spool.peek(1 + rng.below(40) as usize, 64 * 1024).unwrap();
        if b.is_empty() {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let first = parse_payload(&b.records[0].payload).0;
        let last = parse_payload(&b.records[b.len() - 1].payload).0;
        say(format!("P {} {}", id_str(first), id_str(last)));
        peeks += 1;
        if hold_at == Some(peeks) {
            say("H".into());
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(3000)));
        }
        spool.ack(&b).unwrap();
        say(format!("K {}", id_str(last)));
        if appender.is_finished() {
            panic!("appender died");
        }
    }
}

#[derive(Default)]
struct Model {
    /// Batches whose append returned Ok (batch -> records).
    confirmed: BTreeMap<u64, u64>,
    /// Batches whose append started.
    started: BTreeSet<u64>,
    /// Batches found absent after a crash (their append never returned): never to appear.
    gone: BTreeSet<u64>,
    /// Highest record whose ack returned.
    acked: Option<Id>,
    next_batch: u64,
}

#[test]
fn crash_kill9_trials() {
    let trials: u64 = std::env::var("LOCKSTEP_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001 ^ trials);
    let mut m = Model {
        next_batch: 1,
        ..Default::default()
    };
    let t0 = Instant::now();
    let (mut total_replayed, mut total_seen) = (0u64, 0u64);
    let (mut total_confirmed, mut total_acks, mut held_back) = (0u64, 0u64, 0u64);
    let (mut recovery_kills, mut in_recovery) = (0u64, 0u64);
    // How long the child's Spool::open took last time (µs): where to aim a recovery kill.
    let mut open_us = 1000u64;
    let mut trial = 0u64;
    loop {
        // After the planned trials, kills aimed at recovery until one lands there.
        let extra = trial >= trials;
        if extra && (in_recovery > 0 || trial >= trials + 60) {
            break;
        }
        let kind = match trial % 4 {
            _ if extra => Kill::Recovery,
            0 => Kill::Holding,
            1 => Kill::Recovery,
            _ => Kill::Working,
        };
        let interval = trial % 3 == 2;
        let mut cmd = Command::new(&exe);
        cmd.args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .env("CRASH_START", m.next_batch.to_string())
        .env("CRASH_SEED", rng.next().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if interval {
            cmd.env("CRASH_INTERVAL", "1");
        }
        if kind == Kill::Holding {
            cmd.env("CRASH_HOLD", (1 + rng.below(20)).to_string());
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let wait_for = |lines: &mut Vec<String>, what: &str| loop {
            let l = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("trial {trial}: the child never printed {what}"));
            let found = l.split(' ').next() == Some(what);
            lines.push(l);
            if found {
                break;
            }
        };
        match kind {
            Kill::Working => {
                wait_for(&mut lines, "O");
                std::thread::sleep(Duration::from_millis(1 + rng.below(120)));
            }
            Kill::Holding => {
                wait_for(&mut lines, "H");
                std::thread::sleep(Duration::from_micros(rng.below(20_000)));
            }
            Kill::Recovery => {
                wait_for(&mut lines, "R");
                std::thread::sleep(Duration::from_micros(rng.below(open_us / 2 + 1)));
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());

        // Apply the child's log.
        let mut last_peek: Option<(Id, Id)> = None;
        let mut max_peeked: Option<Id> = None;
        for l in &lines {
            let mut it = l.split(' ');
            match (it.next(), it.next(), it.next()) {
                (Some("S"), Some(b), None) => {
                    let b: u64 = b.parse().unwrap();
                    assert!(!m.started.contains(&b), "batch id reused");
                    m.started.insert(b);
                }
                (Some("A"), Some(b), None) => {
                    let b: u64 = b.parse().unwrap();
                    m.confirmed.insert(b, batch_len(b));
                    total_confirmed += 1;
                }
                (Some("P"), Some(a), Some(z)) => {
                    let (a, z) = (parse_id(a), parse_id(z));
                    assert!(
                        m.acked.is_none_or(|k| a > k),
                        "peek returned acked record {a:?}"
                    );
                    last_peek = Some((a, z));
                    max_peeked = max_peeked.max(Some(z));
                }
                (Some("K"), Some(z), None) => {
                    let z = parse_id(z);
                    assert_eq!(last_peek.map(|p| p.1), Some(z));
                    last_peek = None;
                    m.acked = m.acked.max(Some(z));
                    total_acks += 1;
                }
                (Some("A"), ..) | (Some("K"), ..) => {}
                (Some("O"), Some(us), None) => {
                    open_us = us.parse().unwrap_or(open_us).max(20);
                }
                _ => {} // a line cut by the kill
            }
        }
        if kind == Kill::Recovery {
            recovery_kills += 1;
            let opened = lines.iter().any(|l| l.starts_with('O'));
            if lines.iter().any(|l| l == "R") && !opened {
                in_recovery += 1;
            }
        }
        if let Some(&b) = m.started.iter().next_back() {
            m.next_batch = m.next_batch.max(b + 1);
        }

        // Recover and read everything that is not acknowledged.
        let s = Spool::open(&dir, child_cfg(false)).unwrap();
        let g = s.gauges();
        let batch = s.peek(usize::MAX, usize::MAX).unwrap();
        drop(s);
        assert_eq!(
            g.corrupt_records, 0,
            "trial {trial}: corruption after kill -9"
        );
        assert_eq!(
            g.records,
            batch.len() as u64,
            "trial {trial}: gauge disagrees"
        );
        let recs: Vec<(Id, u64)> = batch
            .records
            .iter()
            .map(|r| parse_payload(&r.payload))
            .collect();
        let ids: Vec<Id> = recs.iter().map(|r| r.0).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "trial {trial}: order or duplicate"
        );
        let present: BTreeSet<u64> = ids.iter().map(|i| i.0).collect();
        // The last peeked batch's ack may have landed without its "K" line being printed:
        // the checkpoint write is atomic, so its records are either all present or none.
        if let Some((a, z)) = last_peek {
            let inside = ids.iter().filter(|&&i| i >= a && i <= z).count();
            if kind == Kill::Holding {
                // The child never called ack on it: it must all be back.
                assert!(
                    inside > 0,
                    "trial {trial}: the held, never acked batch is gone"
                );
                held_back += 1;
            }
            if inside == 0 {
                m.acked = m.acked.max(Some(z));
                last_peek = None;
            } else {
                assert_eq!(ids[0], a, "trial {trial}: un-acked batch partly replayed");
                assert!(
                    ids.contains(&z),
                    "trial {trial}: un-acked batch partly replayed"
                );
            }
        }
        for (n, &((b, i), k)) in recs.iter().enumerate() {
            assert!(m.started.contains(&b), "trial {trial}: invented batch {b}");
            assert!(
                !m.gone.contains(&b),
                "trial {trial}: lost batch {b} came back"
            );
            assert!(
                m.acked.is_none_or(|a| (b, i) > a),
                "trial {trial}: acked record {b}:{i} replayed"
            );
            // Whole batches, except that the first may be partly acknowledged.
            let first_of_batch = n == 0 || recs[n - 1].0 .0 != b;
            let partly_acked = n == 0 && m.acked.is_some_and(|a| a.0 == b);
            if first_of_batch && !partly_acked {
                assert_eq!(i, 0, "trial {trial}: batch {b} starts at record {i}");
            }
            let last_of_batch = n + 1 == recs.len() || recs[n + 1].0 .0 != b;
            if last_of_batch {
                assert_eq!(i + 1, k, "trial {trial}: batch {b} cut after record {i}");
            }
            // Records seen by the consumer before must be its last un-acked batch.
            if max_peeked.is_some_and(|p| (b, i) <= p) {
                let (a, z) = last_peek.expect("replayed records without an un-acked peek");
                assert!(
                    (b, i) >= a && (b, i) <= z,
                    "trial {trial}: replay outside the last batch"
                );
                total_replayed += 1;
            }
        }
        total_seen += recs.len() as u64;
        // Every confirmed append is present unless acknowledged.
        for (&b, &k) in &m.confirmed {
            if m.acked.is_none_or(|a| (b, k - 1) > a) {
                assert!(
                    present.contains(&b),
                    "trial {trial}: acknowledged append {b} lost"
                );
            }
        }
        // Started but unconfirmed batches that are absent are gone for good.
        for &b in &m.started {
            if !m.confirmed.contains_key(&b)
                && !present.contains(&b)
                && m.acked.is_none_or(|a| b > a.0)
            {
                m.gone.insert(b);
            }
        }
        for &b in &present {
            m.confirmed.entry(b).or_insert(batch_len(b));
        }
        // Forget what is acknowledged.
        if let Some(a) = m.acked {
            m.confirmed.retain(|&b, _| b >= a.0);
        }
        assert_eq!(common::segments(&dir).len() as u64, g.segments);
        trial += 1;
    }
    eprintln!(
        "crash test: {trial} kill -9 trials in {:.1?}; {} batches appended, {total_confirmed} confirmed, {total_acks} acks; {total_seen} records checked after recovery, {total_replayed} replayed records of an un-acked batch ({held_back} held batches back); {in_recovery} of {recovery_kills} recovery kills landed inside Spool::open",
        t0.elapsed(),
        m.next_batch - 1
    );
    assert!(total_confirmed > 0, "no append was confirmed");
    assert!(total_acks > 0, "no ack returned");
    assert!(total_replayed > 0, "no un-acked batch was replayed");
    assert!(held_back > 0, "no kill landed while a batch was held");
    assert!(in_recovery > 0, "no kill landed inside Spool::open");
}

/// Where the parent aims a kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// While the child appends and drains.
    Working,
    /// While its consumer holds a peeked batch it will never ack.
    Holding,
    /// After it said it enters `Spool::open`, within the time open took last time.
    Recovery,
}
