//! `lockstep_loki`: a Fluent Bit output plugin (proxy ABI, `fluent-bit -e
//! lockstep_out_loki.so`) that ships records to Grafana Loki through a crash-safe
//! disk queue. A thin shell over the cores: [`settings`] reads the keys,
//! `lockstep-map` turns a record into a Loki entry, `lockstep-spool` keeps it, and
//! `lockstep-ship` drains it to Loki and renders the metrics.
//!
//! Invariants:
//! - **Flush never waits on the network.** A flush maps its chunk, appends every entry
//!   to the spool as one atomic batch, and answers `FLB_OK` only once that batch is
//!   durable (fsynced with `spool_sync always`); `FLB_RETRY` when the spool is full
//!   under `spool_full block` or the instance is stopping; `FLB_ERROR` only for a
//!   chunk that cannot be decoded or an entry larger than the spool accepts.
//! - **One drain per instance**, started in init, stopped in exit: it sends while Loki
//!   accepts, starts no batch after `shutdown_grace`, acknowledges every push Loki
//!   completed; what it did not send stays on disk for the next start.
//! - The flush path keeps its stack small (Fluent Bit runs it on a 64 KiB coroutine
//!   stack without a guard page): decoding and mapping do not recurse on input depth,
//!   and buffers live on the heap.
//! - **With `policy_file`, sampling by whole trace** (`lockstep-tail`): a flush writes
//!   its lines to the waiting queue (`spool_dir/waiting`) instead, dropping at once what
//!   is already decided (late lines of dropped traces, lines with no trace id the policy
//!   drops); a decider thread decides each trace `decision_wait` after its first line
//!   and moves the lines of kept traces to the main queue. The drain sees kept lines only.
//! - No `unsafe` here: the FFI lives in `fluent-bit-plugin`'s shell.

pub mod settings;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fluent_bit_plugin::{
    output_plugin, Chunk, Config, ExitReason, FlushResult, InitError, Instance, OutputPlugin,
};
use lockstep_loki::LokiClient;
use lockstep_ship::{Drain, Metrics, MetricsServer};
use lockstep_spool::{Spool, SpoolError};

use crate::settings::{Settings, CORE_KEYS_NOT_SEEN};
use lockstep_map::{MapStats, Mapping, Scratch};
use lockstep_tail::{Stage, StageConfig};

/// One `[OUTPUT]` instance.
pub struct LokiOutput {
    mapping: Arc<Mapping>,
    spool: Arc<Spool>,
    drain: Arc<Drain>,
    /// The decision stage, with `policy_file`.
    stage: Option<Arc<Stage>>,
    metrics: Arc<Metrics>,
    _metrics_server: Option<MetricsServer>,
    stopping: AtomicBool,
    /// When the last "spool full" warning was logged (one per 10 s at most).
    full_logged: Mutex<Option<Instant>>,
    /// `shutdown_grace`: the whole exit (decisions coming due, then the drain).
    grace: Duration,
    decision_wait_ns: u64,
    /// The decision feed's receiver, with `decision_feed`.
    feed: Mutex<Option<lockstep_feed::FeedServer>>,
}

impl OutputPlugin for LokiOutput {
    const NAME: &'static std::ffi::CStr = c"lockstep_loki";
    const DESCRIPTION: &'static std::ffi::CStr =
        c"Grafana Loki through a crash-safe disk queue (lockstep)";

    fn init(config: &Config<'_>) -> Result<Self, InitError> {
        let st = Settings::from_config(config)?;
        for key in CORE_KEYS_NOT_SEEN {
            // Fluent Bit consumes these itself; a proxy plugin cannot read them.
            log::debug!("`{key}` is read by Fluent Bit's core, not by lockstep_loki: use `url`");
        }
        let mapping = Arc::new(Mapping::new(&st.mapping)?);
        if !mapping.has_labels() {
            log::warn!("no `labels` or `label_keys`: every entry goes to one stream");
        }
        // The spool creates the directory (and any missing parent) 0700 itself; creating
        // it here first would use the process umask (0755 seen in a real run).
        let spool = Arc::new(Spool::open(&st.spool_dir, st.spool.clone())?);
        let g = spool.gauges();
        let label = Instance::current()
            .map(|i| i.label().to_string())
            .unwrap_or_else(|| "lockstep_loki".into());
        log::info!(
            "queue {}: {} records ({} bytes) waiting from an earlier run; pushing to {}",
            st.spool_dir.display(),
            g.records,
            g.bytes,
            lockstep_loki::redact_userinfo(&st.client.url)
        );
        let client = LokiClient::new(st.client.clone())?;
        let metrics = Arc::new(Metrics::default());
        // The listener first: a failed bind must fail init before any thread starts.
        let stage_cell: Arc<std::sync::OnceLock<Arc<Stage>>> = Arc::default();
        let feed_cell: Arc<std::sync::OnceLock<Arc<lockstep_feed::FeedMetrics>>> = Arc::default();
        let feed_server: Mutex<Option<lockstep_feed::FeedServer>> = Mutex::new(None);
        let metrics_server = match st.metrics_listen {
            None => None,
            Some(addr) => {
                let (m, s, l) = (metrics.clone(), spool.clone(), label.clone());
                let cell = stage_cell.clone();
                let fcell = feed_cell.clone();
                let srv = MetricsServer::start(addr, format!("{label}.metrics"), move || {
                    let now = lockstep_spool::now_ns();
                    let mut text = m.render(&l, &s.gauges(), now);
                    if let Some(stage) = cell.get() {
                        text.push_str(&stage.render_metrics(&l, now));
                    }
                    if let Some(fm) = fcell.get() {
                        text.push_str(&fm.render(&l));
                    }
                    text
                })
                .map_err(|e| format!("metrics_listen {addr}: {e}"))?;
                log::info!("metrics on http://{}/metrics", srv.addr());
                Some(srv)
            }
        };
        let instance = Instance::current();
        let inst = instance.clone();
        let drain = Arc::new(Drain::start(
            format!("{label}.drain"),
            spool.clone(),
            client,
            st.drain.clone(),
            metrics.clone(),
            Box::new(move || Box::new(inst.as_ref().map(Instance::enter))),
        )?);
        let decision_wait_ns = st.sampling.as_ref().map_or(0, |s| s.table.decision_wait_ns);
        let stage = match st.sampling {
            None => None,
            Some(sm) => {
                let wait_dir = st.spool_dir.join("waiting");
                let cfg = StageConfig {
                    table: sm.table.clone(),
                    fingerprint: sm.fingerprint,
                    // Waiting lines are never dropped to make room: a full waiting
                    // queue answers retry.
                    spool: lockstep_spool::SpoolConfig {
                        full_policy: lockstep_spool::FullPolicy::Block,
                        ..st.spool.clone()
                    },
                    time: lockstep_tail::TimeSource::System,
                    decision_reserve: None,
                    source: sm.source,
                    has_policy: sm.policy_file.is_some(),
                    feed_silence_ns: sm.feed.as_ref().map_or(u64::MAX, |f| {
                        u64::try_from(f.silence.as_nanos()).unwrap_or(u64::MAX)
                    }),
                };
                let policy_name = sm.policy_file.as_ref().map_or_else(
                    || "the decision feed only (no policy_file)".to_string(),
                    |p| p.display().to_string(),
                );
                if sm.policy_file.is_some() {
                    for w in sm.policy.warnings() {
                        log::warn!("policy_file {policy_name}: {w}");
                    }
                }
                let d = drain.clone();
                let opened = Stage::open(
                    sm.policy,
                    cfg,
                    &wait_dir,
                    spool.clone(),
                    kept_line_mapper(mapping.clone(), metrics.clone()),
                    Box::new(move |n| d.notify(n)),
                );
                let (stage, rec) = match opened {
                    Ok(x) => x,
                    Err(e) => {
                        drain.stop();
                        return Err(e.into());
                    }
                };
                log::info!(
                    "sampling by trace with {policy_name}, decisions from {:?} (decision_wait \
                     {:?}, num_traces {}): {} waiting traces, {} decided traces to sweep ({} \
                     lines), {} feed reports recovered from {}",
                    sm.source,
                    std::time::Duration::from_nanos(sm.table.decision_wait_ns),
                    sm.table.num_traces,
                    rec.waiting_traces,
                    rec.pinned_traces,
                    rec.pending_lines,
                    rec.reports,
                    wait_dir.display()
                );
                let stage = Arc::new(stage);
                let inst = instance.clone();
                if let Err(e) = stage.start(
                    format!("{label}.decide"),
                    Box::new(move || Box::new(inst.as_ref().map(Instance::enter))),
                ) {
                    drain.stop();
                    return Err(e.into());
                }
                let _ = stage_cell.set(stage.clone());
                if let Some(feed) = &sm.feed {
                    let fm = Arc::new(lockstep_feed::FeedMetrics::default());
                    let sink = stage.clone();
                    let started = lockstep_feed::FeedServer::start(
                        feed.listen,
                        format!("{label}.feed"),
                        feed.config.clone(),
                        fm.clone(),
                        Arc::new(move |r: &lockstep_feed::Report| {
                            sink.report_kept(&r.trace_ids)
                                .map(|_| ())
                                .map_err(|e| lockstep_feed::SinkError(e.to_string()))
                        }),
                    );
                    match started {
                        Ok(server) => {
                            log::info!(
                                "decision feed on http://{}{} (OTLP/HTTP traces, protobuf or \
                                 JSON): traces the sampler exports are kept",
                                server.addr(),
                                feed.config.path
                            );
                            *feed_server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
                            let _ = feed_cell.set(fm);
                        }
                        Err(e) => {
                            stage.stop();
                            drain.stop();
                            return Err(format!("decision_feed {}: {e}", feed.listen).into());
                        }
                    }
                }
                Some(stage)
            }
        };
        Ok(LokiOutput {
            mapping,
            spool,
            drain,
            stage,
            metrics,
            _metrics_server: metrics_server,
            stopping: AtomicBool::new(false),
            full_logged: Mutex::new(None),
            grace: st.drain.shutdown_grace,
            decision_wait_ns,
            feed: feed_server,
        })
    }

    fn flush(&self, tag: &str, chunk: Chunk<'_>) -> FlushResult {
        let m = &*self.metrics;
        if self.stopping.load(Relaxed) {
            m.chunks_retry.fetch_add(1, Relaxed);
            return FlushResult::Retry;
        }
        if let Some(stage) = &self.stage {
            return self.flush_sampled(stage, tag, chunk);
        }
        // All or nothing without a separate validation pass: nothing is appended until
        // every record decoded, so a bad record drops the chunk with nothing queued.
        let mut stats = MapStats::default();
        // Every record's payload goes into one buffer, through buffers reused from
        // record to record: no allocation per record once they have grown.
        let mut scratch = Scratch::default();
        let mut buf: Vec<u8> = Vec::with_capacity(chunk.len() + chunk.len() / 4);
        let mut ends: Vec<usize> = Vec::new();
        for record in chunk.records() {
            let r = match record {
                Ok(r) => r,
                Err(e) => return self.undecodable(tag, &e),
            };
            let ts = i64::try_from(r.event.timestamp.unix_nanos()).unwrap_or(i64::MAX);
            self.mapping.encode_record(
                tag,
                ts,
                r.event.body,
                r.event.metadata,
                r.group.map(|g| (g.metadata, g.attributes)),
                &mut stats,
                &mut scratch,
                &mut buf,
            );
            ends.push(buf.len());
        }
        if ends.is_empty() {
            m.chunks_ok.fetch_add(1, Relaxed);
            return FlushResult::Ok;
        }
        let payloads: Vec<&[u8]> = ends
            .iter()
            .scan(0, |start, &end| {
                let p = &buf[*start..end];
                *start = end;
                Some(p)
            })
            .collect();
        let res = self.spool.append(&payloads).map(|a| {
            self.drain.notify(a.count);
            a.count
        });
        self.queued(tag, res, &stats, ends.len())
    }

    fn pre_exit(&self, _reason: ExitReason) {
        self.stopping.store(true, Relaxed);
    }

    fn exit(self, _reason: ExitReason) {
        self.stopping.store(true, Relaxed);
        let grace = self.grace;
        let now = Instant::now();
        let deadline = now.checked_add(grace).unwrap_or(now);
        let mut waiting = String::new();
        // No report after this: the feed's threads end before the stage stops.
        if let Some(mut f) = self.feed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            f.stop();
        }
        if let Some(stage) = &self.stage {
            // Traces that come due within the grace are decided and swept (on full
            // facts: no flush is accepted any more), leaving the drain the last quarter
            // of it (at most 5 s) to send them.
            let margin = (grace / 4).min(Duration::from_secs(5));
            let by = stage.now_ns().saturating_add(
                u64::try_from(grace.saturating_sub(margin).as_nanos()).unwrap_or(u64::MAX),
            );
            let left = stage.stop_by(Some(by));
            if left.records > 0 {
                waiting = format!(
                    "; {} records stay in the waiting queue for the next start: {} traces not \
                     yet due within shutdown_grace {grace:?} (decision_wait {:?}; {} of them \
                     held for a chunk answered retry), {} decided traces not yet swept (main \
                     queue full, or behind a trace still waiting)",
                    left.records,
                    left.waiting_traces,
                    Duration::from_nanos(self.decision_wait_ns),
                    left.held_traces,
                    left.pinned_traces
                );
            }
        }
        self.drain.stop_at(deadline);
        let g = self.spool.gauges();
        log::info!(
            "stopped: {} entries sent this run; {} records left in the queue for the next start{waiting}",
            self.metrics.entries_sent.load(Relaxed),
            g.records
        );
    }
}

impl LokiOutput {
    /// With a policy: every record goes through the decision stage, which writes the
    /// raw events of the lines it holds or keeps to the waiting queue as one batch (a
    /// line is mapped to its entry only once its trace is kept: [`kept_line_mapper`]).
    fn flush_sampled(&self, stage: &Stage, tag: &str, chunk: Chunk<'_>) -> FlushResult {
        let mut intake = stage.intake(tag);
        intake.reserve(chunk.len() + chunk.len() / 8);
        intake.chunk(chunk.as_bytes());
        let mut records = 0usize;
        // The raw group-start event of the current group (OTLP resource and scope),
        // stored with each of its lines.
        let data = chunk.as_bytes();
        let mut group: (usize, &[u8]) = (usize::MAX, &[]);
        for record in chunk.records() {
            let r = match record {
                Ok(r) => r,
                // Nothing was appended; dropping the intake releases its traces.
                Err(e) => return self.undecodable(tag, &e),
            };
            records += 1;
            match r.group {
                Some(g) => {
                    if group.0 != g.offset {
                        let raw = data
                            .get(g.offset..)
                            .and_then(|d| fluent_bit_plugin::Chunk::new(d).events().next())
                            .and_then(Result::ok)
                            .map_or(&[][..], |e| e.raw);
                        group = (g.offset, raw);
                    }
                    intake.add_grouped(&r.event, group.1);
                }
                None => {
                    intake.add(&r.event);
                }
            }
        }
        let res = match intake.commit() {
            Ok(n) => Ok(n),
            Err(lockstep_tail::IntakeError::Spool(e)) => Err(e),
            Err(e @ lockstep_tail::IntakeError::Busy { .. }) => {
                self.metrics.chunks_retry.fetch_add(1, Relaxed);
                let mut last = self.full_logged.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    *last = Some(Instant::now());
                    log::warn!("{e}; answering retry");
                }
                return FlushResult::Retry;
            }
        };
        self.queued(tag, res, &MapStats::default(), records)
    }

    /// A chunk with a record that does not decode: dropped whole (nothing of it was
    /// queued), counted, logged.
    fn undecodable(&self, tag: &str, e: &dyn std::fmt::Display) -> FlushResult {
        self.metrics.chunks_error.fetch_add(1, Relaxed);
        log::error!("dropping an undecodable chunk for tag {tag}: {e}");
        FlushResult::Error
    }

    /// The flush's answer once its batch was appended (or not): counters, logs, code.
    fn queued(
        &self,
        tag: &str,
        res: Result<usize, SpoolError>,
        stats: &MapStats,
        records: usize,
    ) -> FlushResult {
        let m = &*self.metrics;
        match res {
            Ok(_) => {
                // Counted once the chunk is queued: a chunk answered retry is mapped
                // again when Fluent Bit flushes it again.
                count_mapping(m, stats);
                m.records_in.fetch_add(records as u64, Relaxed);
                m.chunks_ok.fetch_add(1, Relaxed);
                FlushResult::Ok
            }
            Err(e @ SpoolError::Full { .. }) => {
                m.chunks_retry.fetch_add(1, Relaxed);
                let mut last = self.full_logged.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    *last = Some(Instant::now());
                    log::warn!("{e}; answering retry (spool_full block)");
                }
                FlushResult::Retry
            }
            Err(e @ (SpoolError::RecordTooLarge { .. } | SpoolError::BatchTooLarge { .. })) => {
                m.chunks_error.fetch_add(1, Relaxed);
                log::error!("dropping a chunk for tag {tag}: {e}");
                FlushResult::Error
            }
            Err(e) => {
                m.chunks_retry.fetch_add(1, Relaxed);
                log::error!("cannot queue a chunk for tag {tag}: {e}; answering retry");
                FlushResult::Retry
            }
        }
    }
}

/// Maps a kept line (tag and raw event, from the waiting queue) to its spooled Loki
/// entry, on the decider thread, counting what the mapping fixed as Flush would.
fn kept_line_mapper(mapping: Arc<Mapping>, metrics: Arc<Metrics>) -> lockstep_tail::Mapper {
    let scratch = Mutex::new(Scratch::default());
    Box::new(move |tag: &[u8], event: &[u8], out: &mut Vec<u8>| {
        let tag = String::from_utf8_lossy(tag);
        let r = fluent_bit_plugin::Chunk::new(event)
            .records()
            .next()
            .ok_or("no record in the event")?
            .map_err(|e| e.to_string())?;
        let ts = i64::try_from(r.event.timestamp.unix_nanos()).unwrap_or(i64::MAX);
        let mut stats = MapStats::default();
        let mut sc = scratch.lock().unwrap_or_else(|p| p.into_inner());
        mapping.encode_record(
            &tag,
            ts,
            r.event.body,
            r.event.metadata,
            r.group.map(|g| (g.metadata, g.attributes)),
            &mut stats,
            &mut sc,
            out,
        );
        count_mapping(&metrics, &stats);
        Ok(())
    })
}

/// Adds what the mapping fixed or dropped to the instance's counters.
fn count_mapping(m: &Metrics, stats: &MapStats) {
    m.invalid_utf8_fixed
        .fetch_add(stats.invalid_utf8_fixed, Relaxed);
    m.label_names_sanitised
        .fetch_add(stats.label_names_sanitised, Relaxed);
    m.label_values_truncated
        .fetch_add(stats.label_values_truncated, Relaxed);
    m.metadata_dropped
        .fetch_add(stats.metadata_dropped, Relaxed);
}

output_plugin!(LokiOutput);
