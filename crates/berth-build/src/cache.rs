//! Step cache records: the inputs of a step (parent image, expanded instruction, the build
//! args it saw, the digests of the files it used), their key, and why a miss missed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What a step's result depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// The image the step ran on (`sha256:...`, or `scratch`).
    pub parent: String,
    /// The instruction after expansion, with the metadata it sets.
    pub instruction: String,
    /// Build args in scope (name → value).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Files the step read (context-relative path → content digest).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl Inputs {
    /// The cache key: a digest of every input.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        field(&self.parent);
        field(&self.instruction);
        for (k, v) in &self.args {
            field(k);
            field(v);
        }
        field("\0files");
        for (k, v) in &self.files {
            field(k);
            field(v);
        }
        hex(&h.finalize())
    }
}

/// A cached step: its inputs and the image it produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub inputs: Inputs,
    pub image: String,
    /// Unix seconds of the build that made it.
    #[serde(default)]
    pub created: u64,
}

/// Why `cur` has no cache record: compares it with the records of earlier builds.
pub fn explain(cur: &Inputs, previous: &[Record]) -> String {
    let same_instr: Vec<&Record> = previous
        .iter()
        .filter(|r| r.inputs.instruction == cur.instruction)
        .collect();
    let same_both: Vec<&Record> = same_instr
        .iter()
        .copied()
        .filter(|r| r.inputs.parent == cur.parent)
        .collect();
    if let Some(r) = same_both.iter().max_by_key(|r| r.created) {
        for (k, v) in &cur.args {
            match r.inputs.args.get(k) {
                Some(old) if old != v => {
                    return format!("build arg {k} changed from {old} to {v}");
                }
                None => return format!("build arg {k} was set"),
                _ => {}
            }
        }
        if let Some(k) = r.inputs.args.keys().find(|k| !cur.args.contains_key(*k)) {
            return format!("build arg {k} was unset");
        }
        for (k, v) in &cur.files {
            match r.inputs.files.get(k) {
                Some(old) if old != v => return format!("file {k} changed"),
                None => return format!("file {k} was added"),
                _ => {}
            }
        }
        if let Some(k) = r.inputs.files.keys().find(|k| !cur.files.contains_key(*k)) {
            return format!("file {k} was removed");
        }
        return "cached image was removed".to_string();
    }
    if !same_instr.is_empty() {
        return "parent image changed".to_string();
    }
    if previous.iter().any(|r| r.inputs.parent == cur.parent) {
        return "instruction changed".to_string();
    }
    "not built before".to_string()
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(parent: &str, instr: &str, args: &[(&str, &str)], files: &[(&str, &str)]) -> Inputs {
        Inputs {
            parent: parent.into(),
            instruction: instr.into(),
            args: args
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            files: files
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    #[test]
    fn key_depends_on_every_input() {
        let a = inputs("p", "RUN x", &[("V", "1")], &[("f", "d1")]);
        let keys = [
            a.key(),
            inputs("q", "RUN x", &[("V", "1")], &[("f", "d1")]).key(),
            inputs("p", "RUN y", &[("V", "1")], &[("f", "d1")]).key(),
            inputs("p", "RUN x", &[("V", "2")], &[("f", "d1")]).key(),
            inputs("p", "RUN x", &[("V", "1")], &[("f", "d2")]).key(),
            inputs("p", "RUN x", &[], &[("V", "1"), ("f", "d1")]).key(),
        ];
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j], "{i} vs {j}");
            }
        }
        assert_eq!(a.key(), a.clone().key());
    }

    #[test]
    fn explanations() {
        let old = vec![
            Record {
                inputs: inputs("p", "RUN x", &[("V", "1")], &[]),
                image: "i1".into(),
                created: 1,
            },
            Record {
                inputs: inputs("p", "COPY a /", &[], &[("a/main.c", "d1"), ("a/b.c", "d")]),
                image: "i2".into(),
                created: 1,
            },
        ];
        let e = |i: Inputs| explain(&i, &old);
        assert_eq!(
            e(inputs("p", "RUN x", &[("V", "2")], &[])),
            "build arg V changed from 1 to 2"
        );
        assert_eq!(e(inputs("p", "RUN x", &[], &[])), "build arg V was unset");
        assert_eq!(
            e(inputs(
                "p",
                "COPY a /",
                &[],
                &[("a/main.c", "d2"), ("a/b.c", "d")]
            )),
            "file a/main.c changed"
        );
        assert_eq!(
            e(inputs("p", "COPY a /", &[], &[("a/main.c", "d1")])),
            "file a/b.c was removed"
        );
        assert_eq!(
            e(inputs("z", "RUN x", &[("V", "1")], &[])),
            "parent image changed"
        );
        assert_eq!(e(inputs("p", "RUN other", &[], &[])), "instruction changed");
        assert_eq!(e(inputs("n", "RUN new", &[], &[])), "not built before");
    }
}
