//! `lockstep policy import`: a trace sampler's config converted to a policy, the sampler
//! chosen as the CLI chooses it, with the operator's summary (what was mirrored, what was
//! not and why) as lines of text.

use lockstep_policy::import::{self as imp, Processor, Skipped, Source};
use lockstep_policy::{Format, PolicyError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// No sampler, several and none chosen, or a choice that names none.
    #[error("{0}")]
    Select(String),
    /// The chosen sampler holds what it would refuse to start with (a typo, a wrong
    /// type, an unset environment variable): nothing is written.
    #[error("{msg}")]
    Refused {
        msg: String,
        location: Option<(usize, usize)>,
    },
}

impl ImportError {
    /// Line and column, when the error has them.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            ImportError::Policy(e) => e.location(),
            ImportError::Select(_) => None,
            ImportError::Refused { location, .. } => *location,
        }
    }
}

/// A config converted, and the sampler chosen.
#[derive(Debug, Clone)]
pub struct Imported {
    pub source: Source,
    /// Every sampler in the config.
    pub processors: Vec<Processor>,
    /// Index of the chosen one in `processors`.
    pub chosen: usize,
    /// The summary the CLI prints on stderr: one line per sampler, then for the chosen
    /// one what was mirrored (Fluent Bit), what was not (`NOT MIRRORED … at PATH: why`)
    /// and notes.
    pub messages: Vec<String>,
}

impl Imported {
    pub fn chosen(&self) -> &Processor {
        &self.processors[self.chosen]
    }

    /// What the chosen sampler could not mirror.
    pub fn skipped(&self) -> &[Skipped] {
        &self.chosen().skipped
    }

    /// True when the chosen sampler has nothing that can be mirrored.
    pub fn is_empty(&self) -> bool {
        self.chosen().is_empty()
    }

    /// The policy file: YAML with a header listing what was not mirrored, or JSON (the
    /// policy alone).
    pub fn render(&self, format: Format) -> Result<String, PolicyError> {
        match format {
            Format::Json => serde_json::to_string_pretty(&self.chosen().policy)
                .map(|s| s + "\n")
                .map_err(|e| PolicyError::Format {
                    file: "<imported>".into(),
                    msg: e.to_string(),
                }),
            Format::Yaml => imp::render(self.chosen()),
        }
    }
}

/// `1 policy`, `2 policies`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn ids(procs: &[&Processor]) -> String {
    procs
        .iter()
        .map(|p| p.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Converts `text` (a collector config or block, or a Fluent Bit YAML config; `from`
/// forces the kind) and chooses the sampler: `which` (an id, or a Fluent Bit plugin's
/// name, alias or tag), else the only one, else the only one a pipeline uses.
pub fn import(
    text: &str,
    format: Format,
    origin: &str,
    from: Option<Source>,
    which: Option<&str>,
) -> Result<Imported, ImportError> {
    let (source, procs) = imp::import_config(text, format, origin, from)?;
    if procs.is_empty() {
        return Err(ImportError::Select(match source {
            Source::Collector => format!("{origin}: no tail_sampling processor under `processors:`"),
            Source::FluentBit => format!(
                "{origin}: no `name: sampling` processor under any `pipeline.inputs[*].processors.traces` or `pipeline.outputs[*].processors.traces`"
            ),
        }));
    }
    let all: Vec<&Processor> = procs.iter().collect();
    let mut why_chosen = None;
    let chosen = match which {
        Some(w) => {
            let hits: Vec<usize> = (0..procs.len()).filter(|&i| procs[i].matches(w)).collect();
            match hits.as_slice() {
                [one] => *one,
                [] => {
                    return Err(ImportError::Select(format!(
                        "{origin}: no processor {w:?}; found {}",
                        ids(&all)
                    )))
                }
                many => {
                    let many: Vec<&Processor> = many.iter().map(|&i| &procs[i]).collect();
                    return Err(ImportError::Select(format!(
                        "{origin}: {w:?} names several ({}); choose by id",
                        ids(&many)
                    )));
                }
            }
        }
        None if procs.len() == 1 => 0,
        None => {
            let used: Vec<usize> = (0..procs.len())
                .filter(|&i| !procs[i].pipelines.is_empty())
                .collect();
            match used.as_slice() {
                [one] => {
                    let others: Vec<&Processor> = (0..procs.len())
                        .filter(|i| i != one)
                        .map(|i| &procs[i])
                        .collect();
                    why_chosen = Some(format!(
                        "chose {}: of {} tail_sampling processors it is the only one a pipeline uses ({}); {} {} in no pipeline (--processor chooses another)",
                        procs[*one].id,
                        procs.len(),
                        procs[*one].pipelines.join(", "),
                        ids(&others),
                        if others.len() == 1 { "is" } else { "are" },
                    ));
                    *one
                }
                _ => {
                    return Err(ImportError::Select(format!(
                        "{origin}: several {} ({}); choose one with --processor",
                        match source {
                            Source::Collector => "tail_sampling processors",
                            Source::FluentBit => "plugins with sampling processors",
                        },
                        ids(&all)
                    )))
                }
            }
        }
    };
    let c = &procs[chosen];
    if !c.refused.is_empty() {
        let what = match source {
            Source::Collector => "the Collector",
            Source::FluentBit => "Fluent Bit",
        };
        let first = &c.refused[0];
        let mut msg = match first.location {
            Some((l, col)) => format!("{origin}:{l}:{col}: {}: {}", first.path, first.msg),
            None => format!("{origin}: {}: {}", first.path, first.msg),
        };
        for r in &c.refused[1..] {
            msg.push_str(&format!("\n{origin}: {r}"));
        }
        msg.push_str(&format!(
            "\n{origin}: {} would not start with this config; nothing imported (a policy left out would drop the logs of traces it keeps)",
            what
        ));
        return Err(ImportError::Refused {
            msg,
            location: first.location,
        });
    }
    let mut messages = Vec::new();
    if let Some(w) = why_chosen {
        messages.push(w);
    }
    for p in &procs {
        messages.push(match source {
            Source::Collector => format!(
                "processor {}{}: {} mirrored, {} not mirrored",
                p.id,
                if p.pipelines.is_empty() {
                    " (in no pipeline)".to_string()
                } else {
                    format!(" (pipelines: {})", p.pipelines.join(", "))
                },
                plural(p.converted.len(), "policy", "policies"),
                p.skipped.len()
            ),
            Source::FluentBit => format!(
                "fluent-bit {} ({}): {} mirrored, {} not mirrored",
                p.id,
                p.pipelines.join(", "),
                p.converted.len(),
                p.skipped.len()
            ),
        });
    }
    if source == Source::FluentBit {
        for m in &c.converted {
            messages.push(format!("  mirrored {m}"));
        }
    }
    for s in &c.skipped {
        messages.push(format!(
            "  NOT MIRRORED {} ({}) at {}: {}",
            s.name, s.kind, s.path, s.reason
        ));
    }
    for n in &c.notes {
        messages.push(format!("  note: {n}"));
    }
    Ok(Imported {
        source,
        processors: procs,
        chosen,
        messages,
    })
}
