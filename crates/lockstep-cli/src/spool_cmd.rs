//! `lockstep spool inspect|peek DIR`: look at a spool's backlog, read-only.
//!
//! Both commands use `lockstep_spool::{inspect, read_records}`, which take no lock and
//! write nothing, so they are safe on the live spool of a running Fluent Bit.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use lockstep_spool::{Gauges, Record};
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum SpoolCmd {
    /// Print the gauges of a spool directory: backlog, oldest record, disk use, counters.
    Inspect {
        /// The spool directory.
        dir: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the next unacknowledged records of a spool directory (oldest first).
    Peek {
        /// The spool directory.
        dir: PathBuf,
        /// How many records.
        #[arg(short = 'n', long = "count", default_value_t = 10)]
        n: usize,
        /// Print one JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Show at most this many payload bytes per record in text mode.
        #[arg(long, default_value_t = 300)]
        max_len: usize,
    },
}

/// Refuses a path that is not a spool: missing, not a directory, or a directory with none
/// of a spool's files (`LOCK`, `checkpoint`, `NNNNNNNNNNNNNNNNNNNN.seg`), so `/etc` is
/// never reported as a healthy empty queue.
pub fn ensure_spool(what: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("{what} {shown}: no such directory (the output's spool_dir is missing: wrong path, or the output never started)")
        }
        Err(e) => anyhow::bail!("{what} {shown}: {e}"),
    };
    if !meta.is_dir() {
        anyhow::bail!("{what} {shown}: not a directory (pass the output's spool_dir)");
    }
    let rd = std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("{what} {shown}: {e}"))?;
    let is_spool = rd.filter_map(|e| e.ok()).any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name == "LOCK"
            || name == "checkpoint"
            || name
                .strip_suffix(".seg")
                .is_some_and(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
    });
    if !is_spool {
        anyhow::bail!(
            "{what} {shown}: not a spool (no LOCK, checkpoint or NNNNNNNNNNNNNNNNNNNN.seg file); \
             pass the output's spool_dir"
        );
    }
    Ok(())
}

pub fn run(cmd: SpoolCmd) -> anyhow::Result<i32> {
    match cmd {
        SpoolCmd::Inspect { dir, json } => {
            ensure_spool("spool inspect", &dir)?;
            let g = lockstep_spool::inspect(&dir)
                .map_err(|e| anyhow::anyhow!("spool inspect {}: {e}", dir.display()))?;
            let now = lockstep_spool::now_ns();
            // With `policy_file`, lines wait for their trace's decision in `waiting/`.
            let waiting = dir.join("waiting");
            let wg = if waiting.join("checkpoint").exists() || waiting.join("LOCK").exists() {
                Some(
                    lockstep_spool::inspect(&waiting)
                        .map_err(|e| anyhow::anyhow!("spool inspect {}: {e}", waiting.display()))?,
                )
            } else {
                None
            };
            // Lines whose mapping kept panicking, set aside by the decider (one JSON line each).
            let quarantine = waiting.join(lockstep_tail::QUARANTINE_FILE);
            let quarantined = std::fs::read(&quarantine)
                .ok()
                .map(|b| b.iter().filter(|&&c| c == b'\n').count());
            if json {
                let mut v = gauges_json(&dir, &g, now);
                if let Some(wg) = &wg {
                    v["waiting"] = gauges_json(&waiting, wg, now);
                    v["waiting"]["quarantined"] = json!(quarantined.unwrap_or(0));
                }
                println!("{v}");
            } else {
                print!("{}", gauges_text(&dir, &g, now));
                if let Some(wg) = &wg {
                    println!("waiting queue (lines of traces not yet decided, sampling by trace):");
                    print!("{}", gauges_text(&waiting, wg, now));
                    if let Some(n) = quarantined {
                        println!(
                            "quarantined      {n} records set aside in {} (their mapping panicked)",
                            quarantine.display()
                        );
                    }
                }
            }
            Ok(0)
        }
        SpoolCmd::Peek {
            dir,
            n,
            json,
            max_len,
        } => {
            ensure_spool("spool peek", &dir)?;
            let recs = lockstep_spool::read_records(&dir, n)
                .map_err(|e| anyhow::anyhow!("spool peek {}: {e}", dir.display()))?;
            let now = lockstep_spool::now_ns();
            for r in &recs {
                if json {
                    println!("{}", record_json(r));
                } else {
                    println!("{}", record_text(r, now, max_len));
                }
            }
            if !json && recs.is_empty() {
                println!("(no unacknowledged records)");
            }
            Ok(0)
        }
    }
}

fn gauges_json(dir: &std::path::Path, g: &Gauges, now: u64) -> serde_json::Value {
    json!({
        "dir": dir.display().to_string(),
        "records": g.records,
        "bytes": g.bytes,
        "disk_bytes": g.disk_bytes,
        "segments": g.segments,
        "oldest_ts_ns": g.oldest_ts_ns,
        "oldest_age_ms": g.oldest_age(now).map(|d| d.as_millis() as u64),
        "next_seq": g.next_seq,
        "acked_next_seq": g.acked_next_seq,
        "corrupt_records": g.corrupt_records,
        "corrupt_bytes": g.corrupt_bytes,
        "torn_tail_bytes": g.torn_tail_bytes,
        "dropped_records": g.dropped_records,
        "dropped_bytes": g.dropped_bytes,
        "dropped_segments": g.dropped_segments,
        "checkpoint_corrupt": g.checkpoint_corrupt,
    })
}

fn gauges_text(dir: &std::path::Path, g: &Gauges, now: u64) -> String {
    let oldest = match (g.oldest_ts_ns, g.oldest_age(now)) {
        (Some(ts), Some(age)) => format!("{} ago (ts {ts} ns)", human_duration(age)),
        _ => "-".to_string(),
    };
    // A spool nothing was ever appended to reads "next 1, acknowledged below 0": say so.
    let sequence = if g.records == 0 && g.acked_next_seq == 0 && g.next_seq <= 1 {
        "nothing appended yet".to_string()
    } else {
        format!(
            "next record gets {}; every record below {} acknowledged",
            g.next_seq, g.acked_next_seq
        )
    };
    let checkpoint = if g.checkpoint_corrupt {
        "UNREADABLE: every record on disk will be replayed"
    } else {
        "ok"
    };
    format!(
        "spool {}\n\
         records queued   {}\n\
         payload bytes    {} ({})\n\
         disk use         {} in {} segment(s)\n\
         oldest record    {oldest}\n\
         sequence         {sequence}\n\
         corrupt skipped  {} record(s), {} bytes\n\
         torn tail        {} bytes (after the last complete append; on a live spool: an append in progress)\n\
         dropped (full)   {} record(s), {} bytes, {} segment(s)\n\
         checkpoint       {checkpoint}\n",
        dir.display(),
        g.records,
        human_bytes(g.bytes),
        g.bytes,
        human_bytes(g.disk_bytes),
        g.segments,
        g.corrupt_records,
        g.corrupt_bytes,
        g.torn_tail_bytes,
        g.dropped_records,
        g.dropped_bytes,
        g.dropped_segments,
    )
}

/// The Loki entry a `lockstep_loki` queue record holds, as JSON.
fn entry_json(r: &Record) -> Option<serde_json::Value> {
    let e = lockstep_ship::SpooledEntry::decode(r.seq, &r.payload).ok()?;
    let labels: serde_json::Map<String, serde_json::Value> =
        e.labels.into_iter().map(|(k, v)| (k, v.into())).collect();
    let sm: serde_json::Map<String, serde_json::Value> = e
        .structured_metadata
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    Some(json!({
        "tenant": e.tenant,
        "labels": labels,
        "ts_ns": e.ts_ns.to_string(),
        "line": e.line,
        "structured_metadata": sm,
    }))
}

/// A waiting-queue record (`spool_dir/waiting`, sampling by trace): its kind, trace,
/// and the line it holds (the Fluent Bit event as the flush had it: tag, time, body).
fn waiting_json(r: &Record) -> Option<serde_json::Value> {
    use lockstep_tail::record::{parse, WaitRecord};
    let line = |tag: &[u8], event: &[u8]| -> Option<serde_json::Value> {
        let rec = fluent_bit_chunk::Chunk::new(event).records().next()?.ok()?;
        let body =
            fluent_bit_chunk::json::to_json_string(fluent_bit_chunk::ValueRef::Map(rec.event.body));
        Some(json!({
            "tag": String::from_utf8_lossy(tag),
            "ts_ns": rec.event.timestamp.unix_nanos().to_string(),
            "body": serde_json::from_str::<serde_json::Value>(&body).unwrap_or(body.into()),
        }))
    };
    Some(match parse(&r.payload).ok()? {
        WaitRecord::Pending {
            trace,
            facts,
            tag,
            event,
            ..
        } => json!({
            "waiting": "pending",
            "trace_id": lockstep_record::ids::to_hex(&trace),
            "lines": facts.lines(),
            "line": line(tag, event)?,
        }),
        WaitRecord::Kept { tag, event } => json!({ "waiting": "kept", "line": line(tag, event)? }),
        WaitRecord::Decisions(d) => json!({
            "waiting": "decisions",
            "decisions": d.iter().map(|(t, keep)| json!({
                "trace_id": lockstep_record::ids::to_hex(&t),
                "keep": keep,
            })).collect::<Vec<_>>(),
        }),
        WaitRecord::Reported(ids) => json!({
            "waiting": "reported_kept",
            "trace_ids": ids.iter().map(|t| lockstep_record::ids::to_hex(&t)).collect::<Vec<_>>(),
        }),
    })
}

fn record_json(r: &Record) -> serde_json::Value {
    if let Some(entry) = entry_json(r) {
        return json!({ "seq": r.seq, "ts_ns": r.ts_ns, "len": r.payload.len(), "entry": entry });
    }
    if let Some(w) = waiting_json(r) {
        return json!({ "seq": r.seq, "ts_ns": r.ts_ns, "len": r.payload.len(), "waiting": w });
    }
    let text = std::str::from_utf8(&r.payload);
    json!({
        "seq": r.seq,
        "ts_ns": r.ts_ns,
        "len": r.payload.len(),
        "utf8": text.is_ok(),
        "payload": String::from_utf8_lossy(&r.payload),
    })
}

fn record_text(r: &Record, now: u64, max_len: usize) -> String {
    let age = human_duration(Duration::from_nanos(now.saturating_sub(r.ts_ns)));
    // A Loki entry (the main queue), or a waiting-queue record (sampling by trace).
    let text = entry_json(r)
        .map(|e| format!("{} {} {}", e["labels"], e["line"], e["structured_metadata"]))
        .or_else(|| waiting_json(r).map(|w| w.to_string()));
    if let Some(mut s) = text {
        if s.len() > max_len {
            let mut cut = max_len;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("...");
        }
        return format!(
            "seq {} | {} ago | {} bytes | {s}",
            r.seq,
            age,
            r.payload.len()
        );
    }
    let shown = &r.payload[..r.payload.len().min(max_len)];
    let mut s = String::from_utf8_lossy(shown).escape_debug().to_string();
    if shown.len() < r.payload.len() {
        s.push_str(&format!("... (+{} bytes)", r.payload.len() - shown.len()));
    }
    format!(
        "seq {} | {} ago | {} bytes | {s}",
        r.seq,
        age,
        r.payload.len()
    )
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        format!("{}ms", d.as_millis())
    } else if s < 60 {
        format!("{}.{:01}s", s, d.subsec_millis() / 100)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m{:02}s", s / 3600, (s % 3600) / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(human_duration(Duration::from_secs(3725)), "1h02m05s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
    }
}
