//! A throwaway PostgreSQL 15 cluster: initdb + pg_ctl as user `postgres` in a temp dir, listening
//! only on a unix socket in that dir (port number picked free). Stopped and removed on drop.
//! The server binary and pgbench must both be installed (`postgres_binary`).

use super::build::TempDir;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    pub dir: TempDir,
    pub port: u16,
}

/// The postgres server binary (pgbench too must be installed; the test fails otherwise).
pub fn postgres_binary() -> PathBuf {
    super::require(&format!("{BIN}/pgbench"));
    super::require(&format!("{BIN}/postgres"))
}

fn as_postgres(program: &str, args: &[&str]) -> Output {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--", program])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("runuser {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = TempDir::new("pg");
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let data = dir.path().join("data");
        let data_s = data.to_str().unwrap();
        as_postgres(
            &format!("{BIN}/initdb"),
            &["-D", data_s, "--auth=trust", "-U", "postgres", "--no-sync"],
        );
        let port = free_port();
        let opts = format!(
            "-k {} -p {port} -c listen_addresses='' -c fsync=off",
            dir.path().display()
        );
        let log = dir.path().join("log");
        as_postgres(
            &format!("{BIN}/pg_ctl"),
            &[
                "-D",
                data_s,
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        Postgres { dir, port }
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The postmaster's pid (parent of every backend).
    pub fn postmaster_pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }

    /// Writes a pgbench script (readable by user postgres) into the cluster's dir; its path.
    pub fn script(&self, name: &str, sql: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, sql).unwrap();
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        path
    }

    /// Runs pgbench (as postgres, `-n`: no vacuum) against this cluster with extra arguments.
    pub fn pgbench(&self, args: &[&str]) -> Output {
        let port = self.port.to_string();
        let mut all = vec!["-h", self.socket_dir().to_str().unwrap(), "-p", &port, "-n"];
        all.extend_from_slice(args);
        all.push("postgres");
        as_postgres(&format!("{BIN}/pgbench"), &all)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{BIN}/pg_ctl"), "-D"])
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
