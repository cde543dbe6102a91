//! `[audit]`: where audit records go and what they hold.

use serde_spanned::Spanned;
use toml::de::DeValue;

use super::Cx;
use crate::config::model::Audit;
use crate::config::raw::RawAudit;

impl Cx<'_> {
    /// `None` unless `enabled = true`.
    pub(super) fn audit(&mut self, value: Option<Spanned<DeValue<'_>>>) -> Option<Audit> {
        let span = value.as_ref().map(Spanned::span).unwrap_or_default();
        let raw: RawAudit = value
            .and_then(|v| self.section(v, "audit"))
            .unwrap_or_default();
        if !raw.enabled.unwrap_or(false) {
            return None;
        }
        let audit = Audit {
            file: raw.file.map(|file| self.output_file(&file, "audit.file")),
            journal: raw.journal.unwrap_or(true),
            include_arguments: raw.include_arguments.unwrap_or(false),
        };
        if audit.file.is_none() && !audit.journal {
            let message = "records would go nowhere: `journal = false` and no `file`".to_string();
            let fix = "set `file = \"/var/log/nexus/audit.jsonl\"`, or `journal = true`";
            self.problems.push(span, "audit", message, fix);
        }
        Some(audit)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::model::Audit;

    fn resolve(dir: &Path, text: &str) -> Result<Option<Audit>, Vec<String>> {
        super::super::resolve(text, &dir.join("n.toml"), &|_| None)
            .map(|config| config.audit)
            .map_err(|error| error.problems().iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn defaults_relative_files_and_a_destination_required() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve(dir.path(), "[audit]\nfile = \"a.jsonl\"\n"),
            Ok(None)
        );
        assert_eq!(
            resolve(dir.path(), "[audit]\nenabled = true\n"),
            Ok(Some(Audit {
                file: None,
                journal: true,
                include_arguments: false
            }))
        );
        let text = "[audit]\nenabled = true\nfile = \"a.jsonl\"\njournal = false\n";
        assert_eq!(
            resolve(dir.path(), text).unwrap().unwrap().file,
            Some(dir.path().join("a.jsonl"))
        );
        let problems =
            resolve(dir.path(), "[audit]\nenabled = true\njournal = false\n").unwrap_err();
        assert!(
            problems[0].contains("audit: records would go nowhere"),
            "{problems:?}"
        );
        let problems = resolve(
            dir.path(),
            "[audit]\nenabled = true\nfile = \"no/a.jsonl\"\n",
        )
        .unwrap_err();
        assert!(problems[0].contains("audit.file"), "{problems:?}");
    }
}
