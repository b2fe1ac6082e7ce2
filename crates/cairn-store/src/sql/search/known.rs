//! Which contents' facts this store has committed, so that a batch need not
//! offer them to the database again.
//!
//! Contract: a content is remembered only after a transaction that stored
//! its facts (or found them stored) committed, and facts are never removed
//! (`content_facts` rows are neither updated nor deleted by any method), so
//! a remembered content's facts are in the database. Forgetting is always
//! safe: a forgotten content's facts are offered again and found stored.
//! Other processes' facts are simply not remembered.

use std::collections::HashSet;
use std::sync::Mutex;

use cairn_crypto::Sha256Digest;

use crate::search::ContentFacts;

/// At most this many contents are remembered; past it, the set starts over.
const REMEMBERED: usize = 4096;

/// Contents whose facts are known to be stored.
#[derive(Debug, Default)]
pub(in crate::sql) struct KnownFacts(Mutex<HashSet<Sha256Digest>>);

impl KnownFacts {
    /// The facts of `facts` whose content is not known to be stored.
    pub(in crate::sql) fn unknown(&self, facts: &[ContentFacts]) -> Vec<ContentFacts> {
        if facts.is_empty() {
            return Vec::new();
        }
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        facts
            .iter()
            .filter(|f| !known.contains(&f.content))
            .cloned()
            .collect()
    }

    /// The facts of `facts` are stored: a transaction holding them committed.
    pub(in crate::sql) fn committed(&self, facts: &[ContentFacts]) {
        if facts.is_empty() {
            return;
        }
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() + facts.len() > REMEMBERED {
            known.clear();
        }
        known.extend(facts.iter().map(|f| f.content));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(byte: u8) -> ContentFacts {
        ContentFacts {
            content: Sha256Digest([byte; 32]),
            kind: "component".into(),
            imports: Vec::new(),
            exports: Vec::new(),
        }
    }

    #[test]
    fn only_committed_contents_are_known() {
        let known = KnownFacts::default();
        let batch = [facts(1), facts(2)];
        assert_eq!(known.unknown(&batch).len(), 2);
        known.committed(&batch[..1]);
        let unknown = known.unknown(&batch);
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].content, Sha256Digest([2; 32]));
    }

    #[test]
    fn the_set_is_bounded() {
        let known = KnownFacts::default();
        for n in 0..=REMEMBERED {
            let mut f = facts(0);
            f.content.0[..8].copy_from_slice(&(n as u64).to_le_bytes());
            known.committed(&[f]);
        }
        assert!(known.0.lock().unwrap().len() <= REMEMBERED);
    }
}
