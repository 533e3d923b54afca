//! Noticing that what is traced changed under usdtop: a traced process that execs another
//! program (its probes are gone from its address space), or a traced file replaced on disk —
//! a deploy renames a new build over the old one, so processes started from then on run a file
//! whose uprobes were never placed. Each change is reported once.

use super::process::ObjectKey;
use std::path::{Path, PathBuf};

/// The file `path` names now (following symlinks), if it can be looked at.
fn file_id(path: &Path) -> Option<ObjectKey> {
    ObjectKey::of_path(path).ok()
}

/// Something traced that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Process `pid` now runs another program, `exe`.
    Exec { pid: u32, exe: PathBuf },
    /// Another file now sits at `path`.
    Replaced { path: PathBuf },
    /// Nothing is at `path` any more.
    Removed { path: PathBuf },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Exec { pid, exe } => write!(
                f,
                "process {pid} now runs {} (it exec'd): the probes traced in it are gone",
                exe.display()
            ),
            Change::Replaced { path } => write!(
                f,
                "{} was replaced on disk: processes that start from now on run the new file, \
                 whose probes are not attached",
                path.display()
            ),
            Change::Removed { path } => write!(f, "{} was removed from disk", path.display()),
        }
    }
}

struct Watched {
    what: Kind,
    id: Option<ObjectKey>,
    /// The last change reported, so that each is reported once.
    reported: Option<Change>,
}

enum Kind {
    Process(u32),
    File(PathBuf),
}

/// The processes and files being watched.
#[derive(Default)]
pub struct Watch {
    items: Vec<Watched>,
}

impl Watch {
    pub fn new() -> Watch {
        Watch::default()
    }

    /// Watches `pid` for an exec of another program (once, however often it is named).
    pub fn process(&mut self, pid: u32) {
        if self
            .items
            .iter()
            .any(|w| matches!(w.what, Kind::Process(p) if p == pid))
        {
            return;
        }
        let id = file_id(&exe_link(pid));
        self.items.push(Watched {
            what: Kind::Process(pid),
            id,
            reported: None,
        });
    }

    /// Watches the file at `path` (as it is now) for replacement or removal. A path already
    /// watched is not added twice.
    pub fn file(&mut self, path: &Path) {
        if self
            .items
            .iter()
            .any(|w| matches!(&w.what, Kind::File(p) if p == path))
        {
            return;
        }
        self.items.push(Watched {
            what: Kind::File(path.to_path_buf()),
            id: file_id(path),
            reported: None,
        });
    }

    /// Takes the file now at `path` as the watched one (after following it to a new file).
    pub fn accept(&mut self, path: &Path) {
        for w in &mut self.items {
            if matches!(&w.what, Kind::File(p) if p == path) {
                w.id = file_id(path);
                w.reported = None;
            }
        }
    }

    /// What changed since the last call (each change once).
    pub fn changes(&mut self) -> Vec<Change> {
        let mut out = Vec::new();
        for w in &mut self.items {
            let Some(change) = w.change() else { continue };
            if w.reported.as_ref() != Some(&change) {
                w.reported = Some(change.clone());
                out.push(change);
            }
        }
        out
    }
}

impl Watched {
    fn change(&self) -> Option<Change> {
        let before = self.id?;
        match &self.what {
            Kind::Process(pid) => {
                // A process that is gone has not exec'd; its exit is noticed elsewhere.
                let now = file_id(&exe_link(*pid))?;
                (now != before).then(|| Change::Exec {
                    pid: *pid,
                    exe: std::fs::read_link(exe_link(*pid)).unwrap_or_default(),
                })
            }
            Kind::File(path) => match file_id(path) {
                None => Some(Change::Removed { path: path.clone() }),
                Some(now) if now != before => Some(Change::Replaced { path: path.clone() }),
                Some(_) => None,
            },
        }
    }
}

fn exe_link(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/exe"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("usdtop-watch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_renamed_over_the_watched_one_is_reported_once() {
        let dir = temp_dir("replace");
        let path = dir.join("app");
        std::fs::write(&path, b"old").unwrap();
        let mut watch = Watch::new();
        watch.file(&path);
        assert_eq!(watch.changes(), vec![]);
        std::fs::write(dir.join("app.new"), b"new").unwrap();
        std::fs::rename(dir.join("app.new"), &path).unwrap();
        assert_eq!(
            watch.changes(),
            vec![Change::Replaced { path: path.clone() }]
        );
        assert_eq!(watch.changes(), vec![], "reported once");
        watch.accept(&path);
        assert_eq!(
            watch.changes(),
            vec![],
            "the new file is now the watched one"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_rewritten_in_place_is_not_a_replacement_but_a_removed_one_is_reported() {
        let dir = temp_dir("remove");
        let path = dir.join("app");
        std::fs::write(&path, b"old").unwrap();
        let mut watch = Watch::new();
        watch.file(&path);
        watch.file(&path);
        std::fs::write(&path, b"same inode").unwrap();
        assert_eq!(watch.changes(), vec![]);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            watch.changes(),
            vec![Change::Removed { path: path.clone() }]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_process_that_still_runs_its_program_has_not_changed() {
        let mut watch = Watch::new();
        watch.process(std::process::id());
        assert_eq!(watch.changes(), vec![]);
    }
}
