//! Detection tooling behind the CLI: `gatehouse scan` (one verdict per input line), `gatehouse
//! eval` (recall and false-positive rates on a labelled corpus) and `gatehouse train` (fits the
//! learned stage). File and stdin IO lives here, not in `detect`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::Config;
use crate::detect::eval::{corpus_rows, evaluate_rows, leave_one_source_out, read_path, Split};
use crate::detect::policy::load_dir;
use crate::detect::train::TrainConfig;
use crate::detect::{Detector, MODEL_FILE};

fn detector(config: &Config) -> anyhow::Result<Detector> {
    let settings = crate::proxy::detect_settings(&config.detect);
    Detector::from_dir(&config.detect.policies, settings).context("loading the detection policies")
}

/// Reads JSONL (`{"text": ...}` per line) or plain text lines on stdin; writes one verdict per
/// line as JSON.
///
/// # Errors
/// The policies do not load, or stdout is closed.
pub fn scan(config: &Config) -> anyhow::Result<()> {
    let det = detector(config)?;
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let text = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(o)) => o
                .get("text")
                .and_then(|t| t.as_str())
                .unwrap_or("")
                .to_owned(),
            _ => line,
        };
        let v = det.scan_text(&text);
        writeln!(out, "{}", serde_json::to_string(&v)?)?;
    }
    out.flush()?;
    Ok(())
}

/// The repository's own hand-written evaluation fixtures, read by `gatehouse eval` with no
/// files (relative to the working directory: run it from a clone).
pub const FIXTURES: &str = "eval/handwritten";

/// How `gatehouse eval` measures.
#[derive(Clone, Debug, Default)]
pub struct EvalOptions {
    /// `all`, `holdout` or `training`: rows of the dev corpus's random split.
    pub split: String,
    /// Leave-one-source-out: the first path is the dev corpus directory, the rest extra
    /// labelled files or directories.
    pub loso: bool,
    /// Print the rows it got wrong (never sealed or held-out rows).
    pub errors: bool,
}

/// Prints recall per attack category, family, source and language, false positives per benign
/// group at medium+, high+ and critical, and latency percentiles, for labelled JSONL files (or
/// directories of them); with no paths, the repository's hand-written fixtures.
///
/// # Errors
/// The policies or the files cannot be read.
pub fn eval(config: &Config, paths: &[PathBuf], opts: &EvalOptions) -> anyhow::Result<()> {
    let split = match opts.split.as_str() {
        "" | "all" => Split::All,
        "training" => Split::Training,
        "holdout" => Split::Holdout,
        other => anyhow::bail!("--split must be holdout, training or all, not {other:?}"),
    };
    let report = if opts.loso {
        let Some((corpus, extra)) = paths.split_first() else {
            anyhow::bail!("--loso needs the dev corpus directory (and optional extra files)");
        };
        let mut rows = if corpus.is_dir() {
            corpus_rows(corpus)?
        } else {
            read_path(corpus)?
        };
        for p in extra {
            rows.extend(read_path(p)?);
        }
        let (policies, problems) = load_dir(&config.detect.policies);
        if !problems.is_empty() {
            anyhow::bail!(crate::detect::Error::Policies(problems));
        }
        let settings = crate::proxy::detect_settings(&config.detect);
        println!("training one learned stage per held-out source…");
        leave_one_source_out(
            &policies,
            &settings,
            &rows,
            TrainConfig::default(),
            opts.errors,
        )?
    } else {
        let det = detector(config)?;
        println!(
            "detector: {} rules, learned model {}, built in {:.1} ms",
            det.rule_count(),
            if det.has_model() { "loaded" } else { "absent" },
            det.build_time().as_secs_f64() * 1000.0
        );
        let defaults = [PathBuf::from(FIXTURES)];
        let paths = if paths.is_empty() {
            &defaults[..]
        } else {
            paths
        };
        let mut rows = Vec::new();
        for p in paths {
            rows.extend(read_path(p).with_context(|| {
                format!(
                    "reading {} (run from a clone of the repository, or name the files)",
                    p.display()
                )
            })?);
        }
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        evaluate_rows(
            &det,
            &rows,
            split,
            &format!("{} ({split:?} rows)", names.join(" ")),
        )
    };
    print!("{report}");
    if opts.errors {
        for (cat, level, score, text) in &report.errors {
            println!("{cat:<40} {:<8} {score:>5.1}  {text:?}", level.as_str());
        }
    }
    Ok(())
}

/// Trains the learned stage on the training split of a corpus directory plus every row of
/// `extra`, and writes `model.bin` into the policies directory.
///
/// # Errors
/// The corpus cannot be read or the model cannot be written.
pub fn train(config: &Config, corpus: &Path, extra: &[PathBuf]) -> anyhow::Result<()> {
    let model = crate::detect::train(corpus, extra)?;
    let out = config.detect.policies.join(MODEL_FILE);
    model.save(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `gatehouse health`: asks the running gatehouse's admin listener for `/health` (a container
/// health check that needs no shell or curl). An unspecified listen address (`0.0.0.0`, `::`)
/// is asked on loopback.
///
/// # Errors
/// The address is not an IP:port, the connection fails or times out, or the answer is not 200.
pub fn health(config: &Config) -> anyhow::Result<()> {
    use std::io::Read;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
    use std::time::Duration;

    let mut addr: SocketAddr = config
        .admin
        .listen
        .parse()
        .with_context(|| format!("admin.listen {:?} is not an IP:port", config.admin.listen))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let timeout = Duration::from_secs(3);
    let mut conn = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    write!(
        conn,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    conn.take(4096).read_to_end(&mut answer)?;
    let status_line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    anyhow::ensure!(
        status_line.split(' ').nth(1) == Some("200"),
        "{addr}/health answered {status_line:?}"
    );
    println!("healthy ({addr})");
    Ok(())
}
