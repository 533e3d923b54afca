//! A throwaway PostgreSQL 15 cluster owned by user `postgres`, listening only on a Unix socket
//! in its own temporary directory.

use std::path::PathBuf;
use std::process::{Command, Output};

pub const BIN: &str = "/usr/lib/postgresql/15/bin";
pub const POSTGRES: &str = "/usr/lib/postgresql/15/bin/postgres";

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
}

fn as_postgres(program: &str, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--", program])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("runuser {program}: {e}"))
}

fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Cluster {
    /// initdb + pg_ctl start; the socket lives in `dir`.
    pub fn start() -> Cluster {
        let port = 20000 + (std::process::id() % 20000) as u16;
        let dir = std::env::temp_dir().join(format!("usdtop-agg-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        check(
            "chown",
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .output()
                .unwrap(),
        );
        let data = dir.join("data");
        let d = data.to_str().unwrap();
        check(
            "initdb",
            as_postgres(
                &format!("{BIN}/initdb"),
                &["-D", d, "-A", "trust", "--no-sync", "-U", "postgres"],
            ),
        );
        let opts = format!("-k {} -p {port} -c listen_addresses=''", dir.display());
        let log = dir.join("log");
        check(
            "pg_ctl start",
            as_postgres(
                &format!("{BIN}/pg_ctl"),
                &[
                    "-D",
                    d,
                    "-o",
                    &opts,
                    "-l",
                    log.to_str().unwrap(),
                    "-w",
                    "start",
                ],
            ),
        );
        Cluster { dir, port }
    }

    /// The postmaster's pid (first line of postmaster.pid); backends are its children.
    pub fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }

    /// Runs pgbench with `args` against database `postgres`; returns its stdout.
    pub fn pgbench(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let mut all = vec!["-h", self.dir.to_str().unwrap(), "-p", &port];
        all.extend_from_slice(args);
        all.push("postgres");
        let out = check("pgbench", as_postgres("/usr/bin/pgbench", &all));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a pgbench script readable by user postgres; returns its path.
    pub fn script(&self, name: &str, sql: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, sql).unwrap();
        let _ = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&p)
            .output();
        p.display().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = as_postgres(
            &format!("{BIN}/pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
