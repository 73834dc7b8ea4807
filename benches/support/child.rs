//! The `gatehouse` binary as a child process, shared by `benches/proxy_overhead.rs` and
//! `examples/proxy_cost.rs`: a fresh temp dir (its store and `gatehouse.log`), loopback
//! listeners, the fake upstream as the default `openrouter` upstream, this repo's policies and
//! price table.
//! Killed, and its dir removed, on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The running child and its temp dir.
pub struct Gatehouse {
    pub child: Child,
    pub dir: PathBuf,
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Gatehouse {
    /// What the child wrote to stderr so far.
    pub fn log(&self) -> std::io::Result<String> {
        std::fs::read_to_string(self.dir.join("gatehouse.log"))
    }
}

/// The release binary: cargo's when it built one for this bench, else `target/release`.
#[allow(dead_code)] // the benches use it; `examples/proxy_cost` finds its own
pub fn gatehouse_binary() -> PathBuf {
    option_env!("CARGO_BIN_EXE_gatehouse").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/gatehouse"),
        PathBuf::from,
    )
}

/// A `kB` field of /proc/<pid>/status, e.g. `VmRSS:`.
#[allow(dead_code)] // as above
pub fn proc_kb(pid: u32, key: &str) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find_map(|l| l.strip_prefix(key));
    Ok(line
        .ok_or("no such field")?
        .trim_end_matches("kB")
        .trim()
        .parse()?)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `cmd` (the binary, or a wrapper whose last argument is the binary, with any extra
/// environment the caller set) as `… serve` with its proxy on `proxy` and `upstream` as the
/// upstream. `name` names the temp dir.
pub fn spawn(
    mut cmd: Command,
    name: &str,
    upstream: &str,
    proxy: u16,
) -> std::io::Result<Gatehouse> {
    let dir = std::env::temp_dir().join(format!("gatehouse-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let child = cmd
        .arg("serve")
        .current_dir(&dir)
        .env("GATEHOUSE_PROXY__LISTEN", format!("127.0.0.1:{proxy}"))
        .env(
            "GATEHOUSE_ADMIN__LISTEN",
            format!("127.0.0.1:{}", free_port()?),
        )
        .env("GATEHOUSE_UPSTREAMS__OPENROUTER__BASE_URL", upstream)
        .env("GATEHOUSE_STORE__PATH", dir.join("gatehouse.db"))
        .env("GATEHOUSE_PRICES", policies.join("prices.yaml"))
        .env("GATEHOUSE_DETECT__POLICIES", policies)
        .env("OPENROUTER_API_KEY", "sk-bench-upstream")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("gatehouse.log"))?)
        .spawn()?;
    Ok(Gatehouse { child, dir })
}
