//! Drain and forced states: last writer wins, kept in a state file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::quorum::Admin;
use super::wire::AdminEntry;

/// Every admin state known to this node, by endpoint key.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AdminStore {
    entries: BTreeMap<String, AdminEntry>,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    key: String,
    state: String,
    at_ms: u64,
    origin: String,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    entries: Vec<FileEntry>,
}

impl AdminStore {
    /// The state of `key` (`auto` when none was set).
    pub fn get(&self, key: &str) -> Admin {
        self.entries.get(key).map_or(Admin::Auto, |e| e.state)
    }

    /// The entry of `key`, if any.
    pub fn entry(&self, key: &str) -> Option<&AdminEntry> {
        self.entries.get(key)
    }

    /// Every entry, by key.
    pub fn entries(&self) -> impl Iterator<Item = &AdminEntry> {
        self.entries.values()
    }

    /// Take `e` when it is newer than what is known; true when it was.
    pub fn offer(&mut self, e: AdminEntry) -> bool {
        match self.entries.get(&e.key) {
            Some(old) if !e.newer_than(old) => false,
            _ => {
                self.entries.insert(e.key.clone(), e);
                true
            }
        }
    }

    /// Read a state file; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let f: StateFile =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut s = Self::default();
        for e in f.entries {
            let state = Admin::parse(&e.state)
                .ok_or_else(|| format!("{}: unknown state {:?}", path.display(), e.state))?;
            s.offer(AdminEntry {
                key: e.key,
                state,
                at_ms: e.at_ms,
                origin: e.origin,
            });
        }
        Ok(s)
    }

    /// Write the state file (a temporary file renamed over it, so a crash
    /// leaves the old or the new file, never half of one).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let f = StateFile {
            version: 1,
            entries: self
                .entries
                .values()
                .map(|e| FileEntry {
                    key: e.key.clone(),
                    state: e.state.as_str().into(),
                    at_ms: e.at_ms,
                    origin: e.origin.clone(),
                })
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&f).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, state: Admin, at: u64, origin: &str) -> AdminEntry {
        AdminEntry {
            key: key.into(),
            state,
            at_ms: at,
            origin: origin.into(),
        }
    }

    #[test]
    fn newest_wins_in_any_order_and_survives_a_file() {
        let list = [
            e("p/a", Admin::Drain, 10, "n1"),
            e("p/a", Admin::Auto, 20, "n2"),
            e("p/b", Admin::ForceDown, 5, "n1"),
        ];
        let mut fwd = AdminStore::default();
        let mut rev = AdminStore::default();
        for x in &list {
            fwd.offer(x.clone());
        }
        for x in list.iter().rev() {
            rev.offer(x.clone());
        }
        assert_eq!(fwd, rev);
        assert_eq!(fwd.get("p/a"), Admin::Auto);
        assert_eq!(fwd.get("p/b"), Admin::ForceDown);
        assert_eq!(fwd.get("p/c"), Admin::Auto);
        assert!(!fwd.offer(e("p/a", Admin::Drain, 19, "n9")));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(AdminStore::load(&path).unwrap(), AdminStore::default());
        fwd.save(&path).unwrap();
        assert_eq!(AdminStore::load(&path).unwrap(), fwd);
        std::fs::write(&path, "{not json").unwrap();
        assert!(AdminStore::load(&path).unwrap_err().contains("state.json"));
    }
}
