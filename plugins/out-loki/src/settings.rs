//! Every configuration key of `lockstep_loki`, read from the instance's properties
//! into typed settings. Pure: tests build a [`Config`] from pairs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fluent_bit_plugin::{ByteSize, Config};
use lockstep_loki::{
    Auth, BackoffConfig, BreakerConfig, ClientConfig, Encoding, Secret, TlsOptions,
};
use lockstep_ship::{DrainConfig, TooOld};
use lockstep_spool::{FullPolicy, SpoolConfig, SyncMode};

use lockstep_map::MappingConfig;

/// Keys Fluent Bit's core consumes for every output instance: a proxy plugin never
/// sees them, so `lockstep_loki` cannot honour them and says so at start.
pub const CORE_KEYS_NOT_SEEN: &[&str] = &["host", "port", "tls", "tls.verify", "tls.ca_file"];

/// Every key `lockstep_loki` reads (the README documents each; a test checks this list
/// against what [`Settings::from_config`] asks for).
pub const KNOWN_KEYS: &[&str] = &[
    "url",
    "uri",
    "labels",
    "label_keys",
    "structured_metadata",
    "remove_keys",
    "line_format",
    "drop_single_key",
    "tenant_id",
    "tenant_id_key",
    "http_user",
    "http_passwd",
    "http_passwd_file",
    "bearer_token",
    "bearer_token_file",
    "encoding",
    "timeout",
    "ca_file",
    "insecure_skip_verify",
    "spool_dir",
    "spool_max_bytes",
    "spool_segment_bytes",
    "spool_full",
    "spool_sync",
    "batch_entries",
    "batch_bytes",
    "linger",
    "retry_initial",
    "retry_max",
    "breaker_failures",
    "breaker_hold",
    "too_old",
    "too_old_age",
    "dead_letter_file",
    "dead_letter_max_bytes",
    "shutdown_grace",
    "metrics_listen",
    "policy_file",
    "decision_wait",
    "num_traces",
    "decision_cache_sampled_size",
    "decision_cache_not_sampled_size",
    "max_pinned_traces",
    "decision_hold_max",
    "otlp_mapping",
    "otlp_default_resource_attributes_as_index_labels",
    "otlp_ignore_defaults",
    "otlp_resource_index_labels",
    "otlp_resource_drop",
    "otlp_scope_drop",
    "otlp_log_drop",
    "otlp_severity_text_as_label",
    "decision_feed",
    "decision_feed_path",
    "decision_feed_token",
    "decision_feed_token_file",
    "decision_feed_max_bytes",
    "decision_feed_silence",
    "decision_feed_cache_size",
    "decision_source",
];

/// Keys of the built-in `loki` output that `lockstep_loki` does not implement: refused
/// at start rather than silently ignored.
pub const UNSUPPORTED_KEYS: &[&str] = &[
    "label_map_path",
    "auto_kubernetes_labels",
    "structured_metadata_map_keys",
];

/// Everything an instance needs.
#[derive(Debug)]
pub struct Settings {
    /// Loki client.
    pub client: ClientConfig,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Spool settings.
    pub spool: SpoolConfig,
    /// Drain settings.
    pub drain: DrainConfig,
    /// Record mapping keys.
    pub mapping: MappingConfig,
    /// `/metrics` listen address.
    pub metrics_listen: Option<SocketAddr>,
    /// Sampling by whole trace (`policy_file` and its keys); `None`: every record is
    /// shipped, as without a policy.
    pub sampling: Option<Sampling>,
}

/// The decision stage's settings.
#[derive(Debug)]
pub struct Sampling {
    /// `None`: no `policy_file` (decisions from the feed only; the built-in policy only
    /// names the fields that carry trace ids).
    pub policy_file: Option<PathBuf>,
    pub policy: lockstep_policy::Policy,
    pub source: lockstep_tail::DecisionSource,
    /// The decision feed, when configured.
    pub feed: Option<Feed>,
    /// [`Policy::fingerprint`](lockstep_policy::Policy::fingerprint): names the policy
    /// facts on disk were written under (the compiled rules, not the file's text).
    pub fingerprint: u32,
    pub table: lockstep_tail::TableConfig,
}

/// The decision feed's settings (`decision_feed` and its keys).
#[derive(Debug, Clone)]
pub struct Feed {
    pub listen: SocketAddr,
    pub config: lockstep_feed::FeedConfig,
    /// Silent this long while lines wait: the fallback decides.
    pub silence: Duration,
}

/// Keys that only mean something with `policy_file` or `decision_feed`.
const SAMPLING_KEYS: &[&str] = &[
    "decision_wait",
    "num_traces",
    "decision_cache_sampled_size",
    "decision_cache_not_sampled_size",
    "max_pinned_traces",
    "decision_hold_max",
    "decision_source",
];

fn feed(config: &Config<'_>) -> Result<Option<Feed>, E> {
    let Some(listen) = config.get::<String>("decision_feed")? else {
        // Every `decision_feed_*` key only means something with `decision_feed`.
        let feed_keys = KNOWN_KEYS
            .iter()
            .filter(|k| k.starts_with("decision_feed_"));
        if let Some(k) = feed_keys.into_iter().find(|k| config.raw(k).is_some()) {
            return Err(format!("`{k}` needs `decision_feed`").into());
        }
        return Ok(None);
    };
    let listen = lockstep_ship::parse_listen(&listen)
        .map_err(|e| e.replace("metrics_listen", "decision_feed"))?;
    let path: String = config.get_or("decision_feed_path", "/v1/traces".to_string())?;
    if !path.starts_with('/') {
        return Err(format!("`decision_feed_path` {path:?} must start with /").into());
    }
    let token = match (
        config.get::<String>("decision_feed_token")?,
        config.get::<PathBuf>("decision_feed_token_file")?,
    ) {
        (Some(_), Some(_)) => {
            return Err("set one of `decision_feed_token` and `decision_feed_token_file`".into())
        }
        (Some(t), None) => Some(t),
        (None, Some(path)) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| format!("`decision_feed_token_file` {}: {e}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    if token.as_deref() == Some("") {
        return Err("`decision_feed_token` is empty".into());
    }
    let max = config
        .get_or("decision_feed_max_bytes", ByteSize(16 << 20))?
        .bytes();
    if max == 0 || max > 64 << 20 {
        return Err(
            format!("`decision_feed_max_bytes` {max} must be in 1..=64M (OTLP's cap)").into(),
        );
    }
    let silence = duration(
        config,
        "decision_feed_silence",
        Duration::from_secs(300),
        24 * HOUR,
    )?;
    Ok(Some(Feed {
        listen,
        config: lockstep_feed::FeedConfig {
            path,
            bearer_token: token,
            limits: lockstep_feed::Limits {
                max_body_bytes: max as usize,
            },
            ..lockstep_feed::FeedConfig::default()
        },
        silence,
    }))
}

fn sampling(config: &Config<'_>) -> Result<Option<Sampling>, E> {
    let feed = feed(config)?;
    let policy_file = config.get::<PathBuf>("policy_file")?;
    if policy_file.is_none() && feed.is_none() {
        if let Some(k) = SAMPLING_KEYS.iter().find(|k| config.raw(k).is_some()) {
            return Err(format!(
                "`{k}` needs `policy_file` or `decision_feed` (sampling by trace is off without them)"
            )
            .into());
        }
        return Ok(None);
    }
    use lockstep_tail::DecisionSource as S;
    let source = match config.get::<String>("decision_source")?.as_deref() {
        None if feed.is_some() => S::Feed,
        None => S::Policy,
        Some("feed") => S::Feed,
        Some("policy") => S::Policy,
        Some("feed_or_policy") => S::FeedOrPolicy,
        Some(other) => {
            return Err(
                format!("`decision_source` {other:?}: want feed, policy or feed_or_policy").into(),
            )
        }
    };
    if source != S::Policy && feed.is_none() {
        return Err("`decision_source` feed and feed_or_policy need `decision_feed`".into());
    }
    if source != S::Feed && policy_file.is_none() {
        return Err("`decision_source` policy and feed_or_policy need `policy_file`".into());
    }
    let (file, policy) = match &policy_file {
        Some(policy_file) => {
            let origin = policy_file.display().to_string();
            let text = std::fs::read_to_string(policy_file)
                .map_err(|e| format!("`policy_file` {origin}: {e}"))?;
            let file = lockstep_policy::parse_policy(
                &text,
                lockstep_policy::Format::from_path(policy_file),
                &origin,
            )
            .map_err(|e| format!("`policy_file` {e}"))?;
            let policy = lockstep_policy::Policy::compile(&file)
                .map_err(|e| format!("`policy_file` {origin}: {e}"))?;
            (Some(file), policy)
        }
        // Only its field table (where trace ids are found) is used.
        None => (None, lockstep_policy::Policy::default_policy()),
    };
    let timing = file.map(|f| f.trace_timing()).unwrap_or_default();
    let file_wait = timing
        .decision_wait_ms
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0));
    let wait = duration(
        config,
        "decision_wait",
        file_wait.unwrap_or(Duration::from_secs(30)),
        24 * HOUR,
    )?;
    let file_traces = timing.num_traces.and_then(|n| usize::try_from(n).ok());
    let num_traces: usize = config.get_or("num_traces", file_traces.unwrap_or(50_000))?;
    if num_traces == 0 {
        return Err("`num_traces` must be at least 1".into());
    }
    let max_pinned: usize = config.get_or("max_pinned_traces", num_traces)?;
    if max_pinned == 0 {
        return Err("`max_pinned_traces` must be at least 1".into());
    }
    // The Collector's `decision_cache` in the file, as for `decision_wait`: the keys win.
    let cache = |v: Option<u64>| v.and_then(|n| usize::try_from(n).ok()).unwrap_or(50_000);
    let cache_reported: usize = config.get_or("decision_feed_cache_size", 100_000usize)?;
    // A chunk answered retry comes back on Fluent Bit's retry schedule (scheduler.base
    // 5 s, doubling up to scheduler.cap); its traces wait for it this long at most.
    let hold_max = duration(
        config,
        "decision_hold_max",
        Duration::from_secs(300),
        24 * HOUR,
    )?;
    Ok(Some(Sampling {
        fingerprint: policy.fingerprint(),
        policy,
        policy_file,
        source,
        feed,
        table: lockstep_tail::TableConfig {
            decision_wait_ns: u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX),
            num_traces,
            cache_sampled: config.get_or(
                "decision_cache_sampled_size",
                cache(timing.sampled_cache_size),
            )?,
            cache_not_sampled: config.get_or(
                "decision_cache_not_sampled_size",
                cache(timing.non_sampled_cache_size),
            )?,
            max_pinned,
            cache_reported,
            hold_max_ns: u64::try_from(hold_max.as_nanos()).unwrap_or(u64::MAX),
        },
    }))
}

type E = Box<dyn std::error::Error + Send + Sync>;

/// Reads a duration key and checks it against `max` (larger values would overflow
/// time arithmetic and mean nothing here).
fn duration(
    config: &Config<'_>,
    key: &str,
    default: Duration,
    max: Duration,
) -> Result<Duration, E> {
    let d = config.get_or(key, default)?;
    if d > max {
        return Err(format!("`{key}` {d:?} is above its maximum {max:?}").into());
    }
    Ok(d)
}

const HOUR: Duration = Duration::from_secs(3600);

/// Most labels per stream Loki accepts by default (`max_label_names_per_series`).
pub const MAX_LABELS: usize = 15;

fn secret(config: &Config<'_>, key: &str) -> Result<Option<Secret>, E> {
    let file_key = format!("{key}_file");
    match (
        config.get::<String>(key)?,
        config.get::<PathBuf>(&file_key)?,
    ) {
        (Some(_), Some(_)) => Err(format!("set either `{key}` or `{file_key}`, not both").into()),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("`{file_key}` {}: {e}", path.display()))?;
            Ok(Some(Secret::new(
                text.trim_end_matches(['\n', '\r']).to_string(),
            )))
        }
        (None, None) => Ok(None),
    }
}

fn one_of<'v>(
    config: &Config<'_>,
    key: &str,
    allowed: &[&'v str],
    default: &'v str,
) -> Result<&'v str, E> {
    match config.get::<String>(key)? {
        None => Ok(default),
        Some(v) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(v.trim()))
            .copied()
            .ok_or_else(|| {
                format!("`{key}` must be one of {}, not `{v}`", allowed.join(", ")).into()
            }),
    }
}

/// The built-in `loki` output's default `uri`.
pub const DEFAULT_URI: &str = "/loki/api/v1/push";

/// The push URL from `url` and the built-in output's `uri` key. A `url` without a path
/// (`http://loki:3100`) gets `uri`, by default [`DEFAULT_URI`] as in the built-in output,
/// instead of pushing to `/` and being refused forever. A `url` with a path is used whole,
/// and a `uri` beside it is an error: which one was meant cannot be told.
fn push_url(url: &str, uri: Option<&str>) -> Result<String, E> {
    let Some((_, rest)) = url.split_once("://") else {
        // Not a URL: the client's check names what is wrong with it.
        return Ok(url.to_string());
    };
    let path = rest.find(['/', '?', '#']).map_or("", |at| &rest[at..]);
    if let Some(uri) = uri {
        if !uri.starts_with('/') {
            return Err(format!("`uri` must start with `/`, not `{uri}`").into());
        }
    }
    match (path, uri) {
        ("" | "/", uri) => Ok(format!(
            "{}{}",
            url.trim_end_matches('/'),
            uri.unwrap_or(DEFAULT_URI)
        )),
        (_, None) => Ok(url.to_string()),
        (path, Some(uri)) => Err(format!(
            "`uri` ({uri}) is set but `url` already has a path ({path}): give the whole push \
             URL in `url`, or `url` without a path and `uri`"
        )
        .into()),
    }
}

impl Settings {
    /// Reads and checks every key. Errors name the key.
    pub fn from_config(config: &Config<'_>) -> Result<Settings, E> {
        for key in UNSUPPORTED_KEYS {
            if config.raw(key).is_some() {
                return Err(format!(
                    "`{key}` (a key of the built-in loki output) is not supported by lockstep_loki; \
                     use `labels`, `label_keys` or `structured_metadata` with record accessors"
                )
                .into());
            }
        }
        // Required: a config migrated from the built-in output that kept `Host`/`Port`
        // (which Fluent Bit's core consumes) must not silently ship to a default.
        let url: String = config.get("url")?.ok_or(
            "`url` is required: the full push URL, e.g. https://loki:3100/loki/api/v1/push \
             (Host, Port and tls.* are read by Fluent Bit's core and never reach lockstep_loki)",
        )?;
        let url = push_url(&url, config.get::<String>("uri")?.as_deref())?;
        let user = config.get::<String>("http_user")?;
        let password = secret(config, "http_passwd")?;
        let bearer = secret(config, "bearer_token")?;
        let auth = match (user, password, bearer) {
            (Some(_), _, Some(_)) | (None, Some(_), Some(_)) => {
                return Err(
                    "set either `http_user`/`http_passwd` or `bearer_token`, not both".into(),
                )
            }
            (Some(user), pw, None) => Auth::Basic {
                user,
                password: pw.unwrap_or_else(|| Secret::new("")),
            },
            (None, Some(_), None) => return Err("`http_passwd` is set without `http_user`".into()),
            (None, None, Some(t)) => Auth::Bearer(t),
            (None, None, None) => Auth::None,
        };
        let encoding = match one_of(config, "encoding", &["protobuf", "json"], "protobuf")? {
            "json" => Encoding::Json,
            _ => Encoding::ProtobufSnappy,
        };
        let client = ClientConfig {
            url,
            tenant: None, // per entry (tenant_id / tenant_id_key), sent by the drain
            auth,
            encoding,
            timeout: duration(config, "timeout", Duration::from_secs(10), HOUR)?,
            tls: TlsOptions {
                ca_file: config.get("ca_file")?,
                insecure_skip_verify: config.get_or("insecure_skip_verify", false)?,
            },
        };

        let spool_dir: PathBuf = config
            .get("spool_dir")?
            .ok_or("`spool_dir` is required: the directory of this instance's disk queue")?;
        let full_policy = match one_of(config, "spool_full", &["block", "drop_oldest"], "block")? {
            "drop_oldest" => FullPolicy::DropOldest,
            _ => FullPolicy::Block,
        };
        let sync = match config.get::<String>("spool_sync")? {
            None => SyncMode::Always,
            Some(v) if v.trim().eq_ignore_ascii_case("always") => SyncMode::Always,
            Some(v) => {
                SyncMode::Interval(fluent_bit_plugin::config::parse_duration(&v).map_err(|e| {
                    format!("`spool_sync` must be `always` or a duration, not `{v}`: {e}")
                })?)
            }
        };
        let defaults = SpoolConfig::default();
        let max_bytes = config
            .get_or("spool_max_bytes", ByteSize(defaults.max_bytes))?
            .bytes();
        let segment_bytes = config
            .get_or(
                "spool_segment_bytes",
                ByteSize(defaults.segment_bytes.min(max_bytes / 2).max(1024)),
            )?
            .bytes();
        let spool = SpoolConfig {
            segment_bytes,
            max_bytes,
            full_policy,
            sync,
            max_record_bytes: defaults.max_record_bytes,
        };

        let d = DrainConfig::default();
        let too_old = match one_of(config, "too_old", &["drop", "rewrite"], "drop")? {
            "rewrite" => TooOld::Rewrite,
            _ => TooOld::Drop,
        };
        let batch_entries: usize = config.get_or("batch_entries", d.batch_entries)?;
        if batch_entries == 0 {
            return Err("`batch_entries` must be at least 1".into());
        }
        let breaker_failures: u32 =
            config.get_or("breaker_failures", d.breaker.failure_threshold)?;
        if breaker_failures == 0 {
            return Err("`breaker_failures` must be at least 1".into());
        }
        let drain = DrainConfig {
            batch_entries,
            batch_bytes: config
                .get_or("batch_bytes", ByteSize(d.batch_bytes as u64))?
                .bytes() as usize,
            linger: duration(config, "linger", d.linger, HOUR)?,
            backoff: BackoffConfig {
                initial: duration(config, "retry_initial", d.backoff.initial, HOUR)?,
                max: duration(config, "retry_max", d.backoff.max, HOUR)?,
                multiplier: d.backoff.multiplier,
            },
            breaker: BreakerConfig {
                failure_threshold: breaker_failures,
                hold: duration(config, "breaker_hold", d.breaker.hold, HOUR)?,
            },
            too_old,
            too_old_age: duration(config, "too_old_age", d.too_old_age, 3650 * 24 * HOUR)?,
            too_old_slack: d.too_old_slack,
            dead_letter: config.get("dead_letter_file")?,
            dead_letter_max_bytes: config
                .get_or("dead_letter_max_bytes", ByteSize(d.dead_letter_max_bytes))?
                .bytes(),
            shutdown_grace: duration(config, "shutdown_grace", d.shutdown_grace, HOUR)?,
        };
        if drain.batch_bytes as u64 > spool.max_record_bytes as u64 * 4 || drain.batch_bytes == 0 {
            return Err(format!(
                "`batch_bytes` must be in 1..={}",
                spool.max_record_bytes as u64 * 4
            )
            .into());
        }

        let mapping = MappingConfig {
            labels: config.get("labels")?,
            label_keys: config.get("label_keys")?,
            structured_metadata: config.get("structured_metadata")?,
            remove_keys: config.get("remove_keys")?,
            line_format: config.get("line_format")?,
            drop_single_key: config.get("drop_single_key")?,
            tenant_id: config.get("tenant_id")?,
            tenant_id_key: config.get("tenant_id_key")?,
            otlp: lockstep_map::OtlpConfig {
                mapping: config.get("otlp_mapping")?,
                default_index_labels: config
                    .get("otlp_default_resource_attributes_as_index_labels")?,
                ignore_defaults: config.get("otlp_ignore_defaults")?,
                resource_index_labels: config.get("otlp_resource_index_labels")?,
                resource_drop: config.get("otlp_resource_drop")?,
                scope_drop: config.get("otlp_scope_drop")?,
                log_drop: config.get("otlp_log_drop")?,
                severity_text_as_label: config.get("otlp_severity_text_as_label")?,
            },
        };
        let configured_labels = [&mapping.labels, &mapping.label_keys]
            .into_iter()
            .flatten()
            .flat_map(|v| v.split(','))
            .filter(|e| !e.trim().is_empty())
            .count();
        if configured_labels > MAX_LABELS {
            return Err(format!(
                "`labels` and `label_keys` name {configured_labels} labels; Loki refuses more than \
                 {MAX_LABELS} per stream (every push would get a 400): move some to `structured_metadata`"
            )
            .into());
        }
        let metrics_listen = match config.get::<String>("metrics_listen")? {
            None => None,
            Some(v) => Some(lockstep_ship::parse_listen(&v)?),
        };
        let sampling = sampling(config)?;
        Ok(Settings {
            client,
            spool_dir,
            spool,
            drain,
            mapping,
            metrics_listen,
            sampling,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from `pairs`, plus a `url` when they have none.
    fn s(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let mut all = pairs.to_vec();
        all.push(("url", "http://loki:3100/loki/api/v1/push"));
        Settings::from_config(&Config::from_pairs(&all)).map_err(|e| e.to_string())
    }

    #[test]
    fn url_is_required_and_labels_are_bounded() {
        let err = Settings::from_config(&Config::from_pairs(&[("spool_dir", "/q")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`url` is required") && err.contains("Host, Port"),
            "{err}"
        );
        let many: Vec<String> = (0..16).map(|i| format!("l{i}=v")).collect();
        let err = s(&[("spool_dir", "/q"), ("labels", &many.join(", "))]).unwrap_err();
        assert!(
            err.contains("16 labels") && err.contains("structured_metadata"),
            "{err}"
        );
        assert!(s(&[("spool_dir", "/q"), ("labels", &many[..15].join(", "))]).is_ok());
        let err = s(&[("spool_dir", "/q"), ("linger", "100000h")]).unwrap_err();
        assert!(err.contains("`linger`") && err.contains("maximum"), "{err}");
    }

    #[test]
    fn url_and_uri_compose_like_the_builtin() {
        let url = |pairs: &[(&str, &str)]| {
            let mut all = vec![("spool_dir", "/q")];
            all.extend_from_slice(pairs);
            Settings::from_config(&Config::from_pairs(&all))
                .map(|st| st.client.url)
                .map_err(|e| e.to_string())
        };
        // No path: the built-in's default uri, not a push to `/`.
        for bare in ["http://loki:3100", "http://loki:3100/", "https://loki"] {
            assert_eq!(
                url(&[("url", bare)]).unwrap(),
                format!("{}/loki/api/v1/push", bare.trim_end_matches('/'))
            );
        }
        assert_eq!(
            url(&[("url", "http://loki:3100"), ("uri", "/gw/push")]).unwrap(),
            "http://loki:3100/gw/push"
        );
        // A path is used whole.
        assert_eq!(
            url(&[("url", "http://l:3100/custom/push")]).unwrap(),
            "http://l:3100/custom/push"
        );
        let err = url(&[("url", "http://l/custom/push"), ("uri", "/other")]).unwrap_err();
        assert!(
            err.contains("`uri`") && err.contains("/custom/push") && err.contains("/other"),
            "{err}"
        );
        let err = url(&[("url", "http://l"), ("uri", "gw/push")]).unwrap_err();
        assert!(err.contains("`uri` must start with `/`"), "{err}");
    }

    #[test]
    fn defaults() {
        let st = s(&[
            ("spool_dir", "/q"),
            ("url", "http://l:3100/loki/api/v1/push"),
        ])
        .unwrap();
        assert_eq!(st.client.url, "http://l:3100/loki/api/v1/push");
        assert_eq!(st.client.encoding, Encoding::ProtobufSnappy);
        assert_eq!(st.client.auth, Auth::None);
        assert_eq!(st.spool.full_policy, FullPolicy::Block);
        assert_eq!(st.spool.sync, SyncMode::Always);
        assert_eq!(st.drain.batch_entries, 4096);
        assert_eq!(st.drain.batch_bytes, 1 << 20);
        assert_eq!(st.drain.linger, Duration::from_secs(5));
        assert_eq!(st.drain.too_old, TooOld::Drop);
        assert!(st.metrics_listen.is_none());
    }

    #[test]
    fn keys_are_read() {
        let dir = tempfile_dir();
        let tok = dir.join("tok");
        std::fs::write(&tok, "s3cret\n").unwrap();
        let st = s(&[
            ("spool_dir", "/q"),
            ("url", "http://l/x/push"),
            ("encoding", "JSON"),
            ("bearer_token_file", tok.to_str().unwrap()),
            ("spool_full", "drop_oldest"),
            ("spool_max_bytes", "64M"),
            ("spool_sync", "200ms"),
            ("too_old", "rewrite"),
            ("too_old_age", "2h"),
            ("batch_entries", "7"),
            ("linger", "250ms"),
            ("metrics_listen", "2021"),
            ("labels", "job=x"),
        ])
        .unwrap();
        assert_eq!(st.client.url, "http://l/x/push");
        assert_eq!(st.client.encoding, Encoding::Json);
        assert_eq!(st.client.auth, Auth::Bearer(Secret::new("s3cret")));
        assert_eq!(st.spool.full_policy, FullPolicy::DropOldest);
        assert_eq!(st.spool.max_bytes, 64 << 20);
        assert_eq!(
            st.spool.sync,
            SyncMode::Interval(Duration::from_millis(200))
        );
        assert_eq!(st.drain.too_old, TooOld::Rewrite);
        assert_eq!(st.drain.too_old_age, Duration::from_secs(7200));
        assert_eq!(st.drain.batch_entries, 7);
        assert_eq!(st.drain.linger, Duration::from_millis(250));
        assert_eq!(st.metrics_listen, Some("127.0.0.1:2021".parse().unwrap()));
        assert_eq!(st.mapping.labels.as_deref(), Some("job=x"));
    }

    #[test]
    fn errors_name_the_key() {
        for (pairs, want) in [
            (&[][..], "`spool_dir` is required"),
            (
                &[("spool_dir", "/q"), ("spool_full", "wait")][..],
                "`spool_full` must be one of block, drop_oldest",
            ),
            (&[("spool_dir", "/q"), ("too_old", "keep")][..], "`too_old`"),
            (
                &[("spool_dir", "/q"), ("encoding", "xml")][..],
                "`encoding`",
            ),
            (
                &[("spool_dir", "/q"), ("http_passwd", "p")][..],
                "`http_passwd` is set without `http_user`",
            ),
            (
                &[
                    ("spool_dir", "/q"),
                    ("http_user", "u"),
                    ("bearer_token", "t"),
                ][..],
                "not both",
            ),
            (
                &[("spool_dir", "/q"), ("batch_entries", "0")][..],
                "`batch_entries`",
            ),
            (
                &[("spool_dir", "/q"), ("metrics_listen", "nowhere")][..],
                "metrics_listen",
            ),
            (
                &[("spool_dir", "/q"), ("bearer_token_file", "/nonexistent/t")][..],
                "/nonexistent/t",
            ),
        ] {
            let err = s(pairs).unwrap_err();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn the_decision_feed_keys_and_the_choice_of_decision_source() {
        let d = tempfile_dir();
        let p = d.join("p.yaml");
        std::fs::write(&p, lockstep_policy::DEFAULT_POLICY_YAML).unwrap();
        let p = p.display().to_string();
        use lockstep_tail::DecisionSource as S;
        // a feed alone: decisions from the feed, the built-in policy only names fields
        let st = s(&[("spool_dir", "/q"), ("decision_feed", "4319")]).unwrap();
        let sm = st.sampling.unwrap();
        assert_eq!(sm.source, S::Feed);
        assert!(sm.policy_file.is_none());
        let f = sm.feed.unwrap();
        assert_eq!(f.listen, "127.0.0.1:4319".parse().unwrap());
        assert_eq!(f.config.path, "/v1/traces");
        assert_eq!(f.config.limits.max_body_bytes, 16 << 20);
        assert_eq!(f.silence, Duration::from_secs(300));
        assert_eq!(sm.table.cache_reported, 100_000);
        // a feed and a policy: the feed decides, the policy is the fallback
        let st = s(&[
            ("spool_dir", "/q"),
            ("decision_feed", "0.0.0.0:4319"),
            ("policy_file", &p),
            ("decision_feed_token", "s3cret"),
            ("decision_feed_max_bytes", "1M"),
            ("decision_feed_silence", "90s"),
            ("decision_feed_cache_size", "7"),
        ])
        .unwrap();
        assert!(!format!("{st:?}").contains("s3cret"));
        let sm = st.sampling.unwrap();
        assert_eq!(sm.source, S::Feed);
        let f = sm.feed.unwrap();
        assert_eq!(f.config.bearer_token.as_deref(), Some("s3cret"));
        assert_eq!(f.config.limits.max_body_bytes, 1 << 20);
        assert_eq!(
            (f.silence, sm.table.cache_reported),
            (Duration::from_secs(90), 7)
        );
        let st = s(&[
            ("spool_dir", "/q"),
            ("decision_feed", "4319"),
            ("policy_file", &p),
            ("decision_source", "feed_or_policy"),
        ])
        .unwrap();
        assert_eq!(st.sampling.unwrap().source, S::FeedOrPolicy);
        for (pairs, want) in [
            (
                vec![("decision_source", "feed")],
                "needs `policy_file` or `decision_feed`",
            ),
            (
                vec![("policy_file", p.as_str()), ("decision_source", "feed")],
                "need `decision_feed`",
            ),
            (
                vec![("decision_feed", "4319"), ("decision_source", "policy")],
                "need `policy_file`",
            ),
            (
                vec![("decision_feed", "4319"), ("decision_source", "both")],
                "feed_or_policy",
            ),
            (vec![("decision_feed_token", "x")], "needs `decision_feed`"),
            (vec![("decision_feed", "nowhere")], "decision_feed"),
            (
                vec![("decision_feed", "4319"), ("decision_feed_path", "v1")],
                "must start with /",
            ),
            (
                vec![
                    ("decision_feed", "4319"),
                    ("decision_feed_max_bytes", "65M"),
                ],
                "64M",
            ),
        ] {
            let mut all = vec![("spool_dir", "/q")];
            all.extend(pairs.iter().copied());
            let err = s(&all).unwrap_err();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn secrets_never_in_debug() {
        let st = s(&[
            ("spool_dir", "/q"),
            ("http_user", "u"),
            ("http_passwd", "hunter2"),
        ])
        .unwrap();
        assert!(!format!("{st:?}").contains("hunter2"));
    }

    #[test]
    fn known_keys_are_exactly_the_keys_read() {
        let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
        let cfg = Config::from_fn(|k| {
            asked.lock().unwrap().insert(k.to_string());
            match k {
                "spool_dir" => Some("/q".to_string()),
                "url" => Some("http://l/x".to_string()),
                _ => None,
            }
        });
        Settings::from_config(&cfg).unwrap();
        drop(cfg);
        let asked: std::collections::BTreeSet<String> = asked.into_inner().unwrap();
        let asked: Vec<&str> = asked
            .iter()
            .map(String::as_str)
            .filter(|k| !UNSUPPORTED_KEYS.contains(k))
            .collect();
        let mut known = KNOWN_KEYS.to_vec();
        known.sort();
        assert_eq!(asked, known);
    }

    #[test]
    fn example_configs_and_readme_use_known_keys() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        for key in KNOWN_KEYS {
            assert!(
                readme.contains(&format!("`{key}`")),
                "README does not document `{key}`"
            );
        }
        for dir in ["loki", "loki-sampling", "loki-feed"] {
            let conf = std::fs::read_to_string(
                root.join("fluent-bit-conf")
                    .join(dir)
                    .join("fluent-bit.conf"),
            )
            .unwrap();
            let section = output_section(&conf);
            let core = ["name", "match", "match_regex", "retry_limit"];
            let mut n = 0;
            for (key, _) in &section {
                assert!(
                    core.contains(&key.as_str()) || KNOWN_KEYS.contains(&key.as_str()),
                    "{dir}/fluent-bit.conf uses unknown key `{key}`"
                );
                n += 1;
            }
            assert!(n > 10);
            let yaml = std::fs::read_to_string(
                root.join("fluent-bit-conf")
                    .join(dir)
                    .join("fluent-bit.yaml"),
            )
            .unwrap();
            // The lockstep_loki output's block (other outputs have their own keys).
            let outputs = yaml.split("outputs:").nth(1).unwrap();
            let ours = outputs.split("- name: lockstep_loki").nth(1).unwrap();
            let ours = ours.split("- name:").next().unwrap();
            for line in std::iter::once("name: lockstep_loki")
                .chain(ours.lines())
                .map(str::trim)
                .filter(|l| l.contains(':') && !l.starts_with('#'))
            {
                let key = line.trim_start_matches("- ").split(':').next().unwrap();
                assert!(
                    core.contains(&key) || KNOWN_KEYS.contains(&key),
                    "{dir}/fluent-bit.yaml uses unknown key `{key}`"
                );
            }
        }
    }

    /// The `[OUTPUT]` section of a classic config: (lowercased key, value).
    fn output_section(conf: &str) -> Vec<(String, String)> {
        let lines: Vec<&str> = conf
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let start = lines
            .iter()
            .position(|l| *l == "[OUTPUT]")
            .expect("an [OUTPUT] section");
        let section: Vec<(String, String)> = lines[start + 1..]
            .iter()
            .take_while(|l| !l.starts_with('['))
            .map(|l| {
                let (k, v) = l.split_once(char::is_whitespace).unwrap();
                (k.to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        assert!(section
            .iter()
            .any(|(k, v)| k == "name" && v == "lockstep_loki"));
        section
    }

    /// The one-output sampling config starts as shipped (its files pointed at the repo's
    /// copies): the policy compiles and its keys are read.
    #[test]
    fn the_sampling_config_reads_its_policy() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = root.join("fluent-bit-conf/loki-sampling");
        let conf = std::fs::read_to_string(dir.join("fluent-bit.conf")).unwrap();
        let token = tempfile_dir().join("token");
        std::fs::write(&token, "t").unwrap();
        let pairs: Vec<(String, String)> = output_section(&conf)
            .into_iter()
            .map(|(k, v)| {
                let v = match k.as_str() {
                    "policy_file" => dir.join("lockstep-policy.yaml").display().to_string(),
                    "bearer_token_file" => token.display().to_string(),
                    "labels" => v.replace("${HOSTNAME}", "edge-1"),
                    _ => v,
                };
                (k, v)
            })
            .collect();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let st = Settings::from_config(&Config::from_pairs(&pairs)).unwrap();
        let sm = st.sampling.expect("policy_file set");
        assert_eq!(sm.table.decision_wait_ns, 30_000_000_000);
        assert_eq!(sm.table.num_traces, 50_000);
        assert_eq!(
            sm.policy.names().collect::<Vec<_>>(),
            vec!["errors", "slow", "baseline"]
        );
    }

    #[test]
    fn sampling_keys_need_a_policy_and_timing_comes_from_the_file() {
        let d = tempfile_dir();
        let e = Settings::from_config(&Config::from_pairs(&[
            ("url", "http://l/x"),
            ("spool_dir", "/q"),
            ("num_traces", "5"),
        ]))
        .unwrap_err();
        assert!(
            e.to_string().contains("`num_traces` needs `policy_file`"),
            "{e}"
        );
        let p = d.join("p.yaml");
        std::fs::write(
            &p,
            "decision_wait: 2s\nnum_traces: 9\ndecision_cache: {sampled_cache_size: 70, non_sampled_cache_size: 80}\npolicies:\n  - {name: a, type: always_sample}\n",
        )
        .unwrap();
        let p = p.display().to_string();
        let st = Settings::from_config(&Config::from_pairs(&[
            ("url", "http://l/x"),
            ("spool_dir", "/q"),
            ("policy_file", &p),
        ]))
        .unwrap();
        let t = st.sampling.unwrap().table;
        assert_eq!((t.decision_wait_ns, t.num_traces), (2_000_000_000, 9));
        assert_eq!((t.cache_sampled, t.cache_not_sampled), (70, 80));
        assert_eq!(t.max_pinned, 9, "max_pinned_traces defaults to num_traces");
        let st = Settings::from_config(&Config::from_pairs(&[
            ("url", "http://l/x"),
            ("spool_dir", "/q"),
            ("policy_file", &p),
            ("decision_wait", "250ms"),
            ("num_traces", "3"),
            ("decision_cache_sampled_size", "5"),
            ("max_pinned_traces", "11"),
        ]))
        .unwrap();
        let t = st.sampling.unwrap().table;
        assert_eq!((t.decision_wait_ns, t.num_traces), (250_000_000, 3));
        assert_eq!(
            (t.cache_sampled, t.cache_not_sampled, t.max_pinned),
            (5, 80, 11)
        );
        // a comment does not change what the facts on disk mean
        let with_comment = d.join("c.yaml");
        std::fs::write(
            &with_comment,
            "# tuned\ndecision_wait: 2s\nnum_traces: 9\npolicies:\n  - {name: a, type: always_sample}  # all\n",
        )
        .unwrap();
        let fp = |path: &str| {
            Settings::from_config(&Config::from_pairs(&[
                ("url", "http://l/x"),
                ("spool_dir", "/q"),
                ("policy_file", path),
            ]))
            .unwrap()
            .sampling
            .unwrap()
            .fingerprint
        };
        assert_eq!(fp(&p), fp(&with_comment.display().to_string()));
        std::fs::write(
            d.join("bad.yaml"),
            "policies:\n  - {name: a, type: latency}\n",
        )
        .unwrap();
        let bad = d.join("bad.yaml").display().to_string();
        let e = Settings::from_config(&Config::from_pairs(&[
            ("url", "http://l/x"),
            ("spool_dir", "/q"),
            ("policy_file", &bad),
        ]))
        .unwrap_err();
        assert!(
            e.to_string().contains("bad.yaml") && e.to_string().contains("latency"),
            "{e}"
        );
    }

    /// A directory of its own per call: tests run in parallel and write the same names.
    fn tempfile_dir() -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("lockstep-settings-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
