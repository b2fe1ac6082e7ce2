//! Witness policies (`c2sp.org/tlog-policy`): which logs are trusted, which
//! witnesses exist, and which combinations of their cosignatures make a
//! checkpoint trustworthy.
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> <all|any|k> <member>...
//! quorum <name>
//! ```
//!
//! SPEC: c2sp.org/tlog-policy — lines are separated by spaces and tabs;
//! empty and `#` comment lines are ignored; a group only names witnesses and
//! groups defined on earlier lines, each at most once, with `1 <= k <= n`;
//! there is exactly one quorum line; `none` is the predefined empty quorum;
//! two vkeys wrapping the same public key are duplicates; log keys are
//! Ed25519 note keys (`0x01`) and witness keys are cosignature keys
//! (`0x04`).

use std::collections::BTreeSet;

use cairn_crypto::note::{ALG_COSIGNATURE_V1, ALG_ED25519, Note, VerifierKey};

use crate::Error;

/// Most logs, witnesses or groups a policy may define.
// SPEC: c2sp.org/tlog-policy recommends supporting at least 32 of each.
pub const MAX_ENTRIES: usize = 256;

/// A log the policy trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyLog {
    /// Its note verifier key (its name is the origin).
    pub vkey: VerifierKey,
    /// Where it is served, if given.
    pub url: Option<String>,
}

/// A witness the policy knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWitness {
    /// Its name in the policy.
    pub name: String,
    /// Its cosignature verifier key.
    pub vkey: VerifierKey,
    /// Its submission prefix, if given.
    pub url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Member>,
}

/// A parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    /// `None` is the predefined `none` quorum.
    quorum: Option<Member>,
}

fn malformed(line: usize, reason: impl Into<String>) -> Error {
    Error::malformed("policy", format!("line {line}: {}", reason.into()))
}

fn parse_vkey(line: usize, text: &str, alg: u8, what: &str) -> Result<VerifierKey, Error> {
    let vkey: VerifierKey = text
        .parse()
        .map_err(|e| malformed(line, format!("invalid {what} vkey: {e}")))?;
    if vkey.alg() != alg {
        return Err(malformed(
            line,
            format!("a {what} vkey must have signature type {alg:#04x}"),
        ));
    }
    Ok(vkey)
}

impl Policy {
    /// Parses a policy file.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut policy = Policy {
            logs: Vec::new(),
            witnesses: Vec::new(),
            groups: Vec::new(),
            quorum: None,
        };
        let mut quorum_seen = false;
        let mut keys: BTreeSet<[u8; 32]> = BTreeSet::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            if raw.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
                return Err(malformed(line, "control characters are not allowed"));
            }
            let fields: Vec<&str> = raw.split([' ', '\t']).filter(|f| !f.is_empty()).collect();
            let Some((keyword, args)) = fields.split_first() else {
                continue;
            };
            if keyword.starts_with('#') {
                continue;
            }
            if quorum_seen {
                return Err(malformed(line, "nothing may follow the quorum line"));
            }
            if policy.logs.len() + policy.witnesses.len() + policy.groups.len() >= MAX_ENTRIES {
                return Err(malformed(line, "too many entries"));
            }
            match *keyword {
                "log" => {
                    let (vkey, url) = match args {
                        [vkey] => (vkey, None),
                        [vkey, url] => (vkey, Some((*url).to_owned())),
                        _ => return Err(malformed(line, "expected `log <vkey> [<url>]`")),
                    };
                    let vkey = parse_vkey(line, vkey, ALG_ED25519, "log")?;
                    if !keys.insert(vkey.public_key().to_bytes()) {
                        return Err(malformed(line, "duplicate key"));
                    }
                    policy.logs.push(PolicyLog { vkey, url });
                }
                "witness" => {
                    let (name, vkey, url) = match args {
                        [name, vkey] => (name, vkey, None),
                        [name, vkey, url] => (name, vkey, Some((*url).to_owned())),
                        _ => {
                            return Err(malformed(
                                line,
                                "expected `witness <name> <vkey> [<url>]`",
                            ));
                        }
                    };
                    policy.check_new_name(line, name)?;
                    let vkey = parse_vkey(line, vkey, ALG_COSIGNATURE_V1, "witness")?;
                    if !keys.insert(vkey.public_key().to_bytes()) {
                        return Err(malformed(line, "duplicate key"));
                    }
                    policy.witnesses.push(PolicyWitness {
                        name: (*name).to_owned(),
                        vkey,
                        url,
                    });
                }
                "group" => {
                    let [name, threshold, members @ ..] = args else {
                        return Err(malformed(line, "expected `group <name> <k> <member>...`"));
                    };
                    policy.check_new_name(line, name)?;
                    if members.is_empty() {
                        return Err(malformed(line, "a group needs at least one member"));
                    }
                    let mut resolved = Vec::with_capacity(members.len());
                    for member in members.iter() {
                        let member = policy.lookup(member).ok_or_else(|| {
                            malformed(line, format!("`{member}` is not defined above"))
                        })?;
                        if resolved.contains(&member) {
                            return Err(malformed(line, "a member is listed twice"));
                        }
                        resolved.push(member);
                    }
                    let threshold = match *threshold {
                        "all" => resolved.len(),
                        "any" => 1,
                        k => {
                            let valid = !k.is_empty()
                                && k.bytes().all(|b| b.is_ascii_digit())
                                && !(k.len() > 1 && k.starts_with('0'));
                            let k: usize = if valid { k.parse().unwrap_or(0) } else { 0 };
                            if k == 0 || k > resolved.len() {
                                return Err(malformed(
                                    line,
                                    "the threshold must be all, any or k with 1 <= k <= n",
                                ));
                            }
                            k
                        }
                    };
                    policy.groups.push(Group {
                        name: (*name).to_owned(),
                        threshold,
                        members: resolved,
                    });
                }
                "quorum" => {
                    let [name] = args else {
                        return Err(malformed(line, "expected `quorum <name>`"));
                    };
                    policy.quorum = if *name == "none" {
                        None
                    } else {
                        Some(policy.lookup(name).ok_or_else(|| {
                            malformed(line, format!("`{name}` is not defined above"))
                        })?)
                    };
                    quorum_seen = true;
                }
                other => {
                    return Err(malformed(
                        line,
                        format!(
                            "unknown keyword `{}`",
                            other.chars().take(40).collect::<String>()
                        ),
                    ));
                }
            }
        }
        if !quorum_seen {
            return Err(Error::malformed("policy", "a policy needs a quorum line"));
        }
        Ok(policy)
    }

    fn check_new_name(&self, line: usize, name: &str) -> Result<(), Error> {
        if name == "none" {
            return Err(malformed(line, "`none` is reserved"));
        }
        if self.lookup(name).is_some() {
            return Err(malformed(line, format!("`{name}` is defined twice")));
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<Member> {
        if let Some(i) = self.witnesses.iter().position(|w| w.name == name) {
            return Some(Member::Witness(i));
        }
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(Member::Group)
    }

    /// The trusted logs.
    pub fn logs(&self) -> &[PolicyLog] {
        &self.logs
    }

    /// The witnesses.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// Whether the policy requires no cosignatures (`quorum none`).
    pub fn requires_nothing(&self) -> bool {
        self.quorum.is_none()
    }

    fn member_satisfied(&self, member: Member, cosigned: &[bool]) -> bool {
        match member {
            Member::Witness(i) => cosigned.get(i).copied().unwrap_or(false),
            Member::Group(g) => self.groups.get(g).is_some_and(|group| {
                group
                    .members
                    .iter()
                    .filter(|m| self.member_satisfied(**m, cosigned))
                    .count()
                    >= group.threshold
            }),
        }
    }

    /// Whether the witnesses named in `cosigned_by` (policy names) satisfy
    /// the quorum.
    pub fn quorum_met(&self, cosigned_by: &[&str]) -> bool {
        let cosigned: Vec<bool> = self
            .witnesses
            .iter()
            .map(|w| cosigned_by.contains(&w.name.as_str()))
            .collect();
        match self.quorum {
            None => true,
            Some(member) => self.member_satisfied(member, &cosigned),
        }
    }

    /// Verifies a checkpoint note against the policy: it must be signed by
    /// one of the policy's logs (whose name must be the note's origin), and
    /// the witnesses whose cosignatures verify must meet the quorum. Returns
    /// the names of the witnesses that cosigned.
    ///
    /// Any signature by a known key that fails to verify rejects the note.
    pub fn verify(&self, note: &Note, origin: &str) -> Result<Vec<String>, Error> {
        let mut verifiers: Vec<VerifierKey> = self
            .logs
            .iter()
            .filter(|l| l.vkey.name() == origin)
            .map(|l| l.vkey.clone())
            .collect();
        if verifiers.is_empty() {
            return Err(Error::malformed(
                "checkpoint",
                format!("origin `{origin}` is not a log of the policy"),
            ));
        }
        verifiers.extend(self.witnesses.iter().map(|w| w.vkey.clone()));
        let verified = note
            .verify(&verifiers)
            .map_err(|e| Error::malformed("checkpoint", e.to_string()))?;
        let log_signed = verified.iter().any(|v| {
            self.logs
                .iter()
                .any(|l| l.vkey.name() == v.name && l.vkey.key_id() == v.key_id)
        });
        if !log_signed {
            return Err(Error::malformed(
                "checkpoint",
                "no signature of a trusted log key",
            ));
        }
        let cosigned: Vec<String> = self
            .witnesses
            .iter()
            .filter(|w| {
                verified
                    .iter()
                    .any(|v| v.name == w.vkey.name() && v.key_id == w.vkey.key_id())
            })
            .map(|w| w.name.clone())
            .collect();
        let names: Vec<&str> = cosigned.iter().map(String::as_str).collect();
        if !self.quorum_met(&names) {
            return Err(Error::malformed(
                "checkpoint",
                format!(
                    "the witness quorum is not met (cosigned by: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
        Ok(cosigned)
    }
}

#[cfg(test)]
mod tests {
    use cairn_crypto::Ed25519PrivateKey;
    use cairn_crypto::note::NoteSignature;

    use super::*;

    fn witness_vkey(name: &str, seed: u8) -> String {
        let key = Ed25519PrivateKey::from_seed(&[seed; 32]).unwrap();
        VerifierKey::cosignature(name, key.public_key())
            .unwrap()
            .to_string()
    }

    fn log_vkey(origin: &str, seed: u8) -> String {
        let key = Ed25519PrivateKey::from_seed(&[seed; 32]).unwrap();
        VerifierKey::ed25519(origin, key.public_key())
            .unwrap()
            .to_string()
    }

    fn spec_example() -> String {
        // The example of c2sp.org/tlog-policy with real keys.
        let mut text = format!("log {}\n\n", log_vkey("example.com/log", 1));
        for (seed, name) in (10u8..).zip(["X1", "X2", "X3"]) {
            text.push_str(&format!("witness {name} {}\n", witness_vkey(name, seed)));
        }
        text.push_str("group X-witnesses 2 X1 X2 X3\n\n");
        for (seed, name) in (20u8..).zip(["Y1", "Y2", "Y3"]) {
            text.push_str(&format!(
                "witness {name}\t{} https://{name}.example/\n",
                witness_vkey(name, seed)
            ));
        }
        text.push_str("  group Y-witnesses any Y1 Y2 Y3\n\n# both\n");
        text.push_str("group X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n");
        text
    }

    #[test]
    fn quorum_of_the_spec_example() {
        let policy = Policy::parse(&spec_example()).unwrap();
        assert_eq!(policy.witnesses().len(), 6);
        assert_eq!(
            policy.witnesses()[3].url.as_deref(),
            Some("https://Y1.example/")
        );
        assert!(policy.quorum_met(&["X1", "X3", "Y2"]));
        assert!(
            !policy.quorum_met(&["X1", "Y2"]),
            "only 1 of the X witnesses"
        );
        assert!(!policy.quorum_met(&["X1", "X2", "X3"]), "no Y witness");
        assert!(!policy.quorum_met(&[]));
    }

    #[test]
    fn notes_are_verified_against_logs_and_quorum() {
        let log = Ed25519PrivateKey::from_seed(&[1; 32]).unwrap();
        let w = |seed| Ed25519PrivateKey::from_seed(&[seed; 32]).unwrap();
        let policy = Policy::parse(&spec_example()).unwrap();
        let text = "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let mut note = Note::new(text).unwrap();
        note.add_signature(NoteSignature::sign_ed25519("example.com/log", &log, text).unwrap());
        assert!(
            policy.verify(&note, "example.com/log").is_err(),
            "no cosignatures"
        );
        for (name, seed) in [("X1", 10), ("X2", 11), ("Y3", 22)] {
            note.add_signature(NoteSignature::cosign(name, &w(seed), text, 1_700_000_000).unwrap());
        }
        assert_eq!(
            policy.verify(&note, "example.com/log").unwrap(),
            vec!["X1", "X2", "Y3"]
        );
        assert!(policy.verify(&note, "example.com/other").is_err());
        // A cosignature by a known key that does not verify rejects the note.
        let mut forged = note.clone();
        forged.add_signature(NoteSignature {
            signature: vec![0; 72],
            ..NoteSignature::cosign("Y1", &w(20), text, 1).unwrap()
        });
        assert!(policy.verify(&forged, "example.com/log").is_err());
        // `quorum none` needs only the log.
        let none = Policy::parse(&format!(
            "log {}\nquorum none\n",
            log_vkey("example.com/log", 1)
        ))
        .unwrap();
        assert!(none.requires_nothing());
        let mut bare = Note::new(text).unwrap();
        bare.add_signature(NoteSignature::sign_ed25519("example.com/log", &log, text).unwrap());
        assert!(none.verify(&bare, "example.com/log").unwrap().is_empty());
    }

    #[test]
    fn malformed_policies_are_rejected() {
        let w1 = witness_vkey("w1", 1);
        let w2 = witness_vkey("w2", 2);
        let cases = [
            String::new(),
            format!("witness w1 {w1}\n"),
            format!("witness w1 {w1}\nquorum w2\n"),
            format!("witness w1 {w1}\nwitness w1 {w2}\nquorum w1\n"),
            format!("witness w1 {w1}\nwitness w2 {w1}\nquorum w1\n"),
            format!("witness w1 {w1}\ngroup g 2 w1\nquorum g\n"),
            format!("witness w1 {w1}\ngroup g 0 w1\nquorum g\n"),
            format!("witness w1 {w1}\ngroup g 01 w1\nquorum g\n"),
            format!("witness w1 {w1}\ngroup g any w1 w1\nquorum g\n"),
            format!("witness w1 {w1}\ngroup g any w2\nwitness w2 {w2}\nquorum g\n"),
            format!("witness none {w1}\nquorum none\n"),
            format!("witness w1 {w1}\nquorum w1\nquorum w1\n"),
            format!("witness w1 {}\nquorum w1\n", log_vkey("w1", 1)),
            format!("log {w1}\nquorum none\n"),
            "frobnicate\nquorum none\n".to_owned(),
            format!("witness w1 {w1} url extra\nquorum w1\n"),
            "quorum none\u{7}\n".to_owned(),
        ];
        for case in cases {
            assert!(Policy::parse(&case).is_err(), "{case:?}");
        }
        assert!(Policy::parse("quorum none\n").is_ok());
    }
}
