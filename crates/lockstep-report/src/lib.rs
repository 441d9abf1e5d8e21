//! # lockstep-report
//!
//! What an operator reads about a policy and a sample of log lines, as data:
//! - [`explain`]: per line, the normalised fields, which alias supplied each, the
//!   decision and its reason (`lockstep explain`);
//! - [`check`]: the schema-drift report, keep ratio by reason (`lockstep check`);
//! - [`import`]: a trace sampler's config converted, with what could not be mirrored and
//!   why (`lockstep policy import`);
//! - [`input`]: policy text of any supported kind (a lockstep policy, a collector
//!   `tail_sampling` block or whole config, a Fluent Bit YAML config) resolved to one
//!   compiled policy.
//!
//! The CLI prints these and the browser playground (`crates/lockstep-playground`)
//! renders them; neither has its own copy of the logic, so the page and the CLI cannot
//! disagree about a line.
//!
//! Invariants: pure (no I/O, no clock, no FFI); an unreadable line is reported with its
//! line number and byte offset and never stops the lines after it; line numbers count
//! every line of the input, blank ones included (blank lines are not reported).

pub mod check;
pub mod explain;
pub mod import;
pub mod input;

/// The lines of a JSON-lines text as `(line_no, line)`: 1-based, counting every line,
/// without the line ending (`\n` or `\r\n`); lines that are only white space are skipped.
/// The CLI reads files with the same rules ([`line_of`]).
pub fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_inclusive('\n')
        .enumerate()
        .filter_map(|(i, l)| line_of(l).map(|l| (i + 1, l)))
}

/// One raw line (with or without its ending) as the reports read it: `None` when blank.
pub fn line_of(raw: &str) -> Option<&str> {
    let l = raw.trim_end_matches(['\n', '\r']);
    (!l.trim().is_empty()).then_some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_as_written_and_blank_ones_skipped() {
        let got: Vec<_> = lines("{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}").collect();
        assert_eq!(
            got,
            vec![(1, "{\"a\":1}"), (4, "{\"b\":2}"), (5, "{\"c\":3}")]
        );
        assert_eq!(lines("").count(), 0);
    }
}
