//! The `gatehouse` binary: CLI → config → app. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use gatehouse::{app, config, telemetry};

/// `EX_USAGE`: the configuration or the command line is wrong.
const EXIT_CONFIG: u8 = 64;

const USAGE: &str = "usage: gatehouse [COMMAND] [--config PATH] [ARGS]

  serve                         run the gateway (default)
  check                         validate the configuration and exit
  health                        ask the running gatehouse (admin listener) for /health; exit 0 when healthy
  scan                          read JSONL ({\"text\": ...}) or text lines on stdin, print verdicts
  eval [PATH...] [--split holdout|training|all] [--errors]
                                recall per attack category, family, source and language, false
                                positives per benign group at medium+, high+ and critical, on
                                labelled JSONL files or directories (default: the repository's
                                hand-written fixtures in eval/handwritten)
  eval --loso CORPUS_DIR [EXTRA...] [--errors]
                                leave-one-source-out: each source scanned by a learned stage
                                trained on every other source
  train CORPUS_DIR [EXTRA...]   fit the learned detector stage on the corpus's training split
                                plus extra labelled files, write policies/model.bin
  report [--period daily|weekly|monthly] [--date YYYY-MM-DD]
                                write one analysis report (stored; printed as Markdown) on the
                                previous complete period, or the one containing --date, in
                                report.schedule.time_zone

With no --config, ./gateway.yaml is read when present; GATEHOUSE_* variables override it.";

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    telemetry::logging::init();
    let mut args = std::env::args().skip(1);
    let mut command = None;
    let mut config_path: Option<PathBuf> = None;
    let mut positional: Vec<String> = Vec::new();
    let mut eval_opts = gatehouse::tools::EvalOptions::default();
    let mut period = String::from("daily");
    let mut date: Option<String> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(p) => config_path = Some(PathBuf::from(p)),
                None => return usage("--config needs a path"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--split" => match args.next() {
                Some(s) => eval_opts.split = s,
                None => return usage("--split needs a value"),
            },
            "--loso" => eval_opts.loso = true,
            "--errors" => eval_opts.errors = true,
            "--period" => match args.next() {
                Some(p) => period = p,
                None => return usage("--period needs daily, weekly or monthly"),
            },
            "--date" => match args.next() {
                Some(d) => date = Some(d),
                None => return usage("--date needs a local date YYYY-MM-DD"),
            },
            "serve" | "check" | "health" | "scan" | "eval" | "train" | "report"
                if command.is_none() =>
            {
                command = Some(arg)
            }
            other if command.is_some() && !other.starts_with('-') => {
                positional.push(other.to_owned())
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let config = match config::load(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => return bad_config(&e.to_string()),
    };
    match config::validate(&config) {
        Ok(warnings) => warnings.iter().for_each(|w| tracing::warn!("{w}")),
        Err(problems) => return bad_config(&problems.to_string()),
    }
    match command.as_deref() {
        Some("check") => {
            println!("configuration is valid");
            check_traces(&config)
        }
        Some("health") => done(gatehouse::tools::health(&config)),
        Some("scan") => done(gatehouse::tools::scan(&config)),
        Some("eval") => {
            let paths: Vec<PathBuf> = positional.iter().map(PathBuf::from).collect();
            done(gatehouse::tools::eval(&config, &paths, &eval_opts))
        }
        Some("train") => match positional.split_first() {
            Some((corpus, extra)) => {
                let extra: Vec<PathBuf> = extra.iter().map(PathBuf::from).collect();
                done(gatehouse::tools::train(&config, corpus.as_ref(), &extra))
            }
            None => usage("train needs a CORPUS_DIR"),
        },
        Some("report") => {
            let Some(p) = gatehouse::report::Period::parse(&period) else {
                return usage("--period must be daily, weekly or monthly");
            };
            match date.as_deref().map(str::parse).transpose() {
                Ok(d) => report(config, p, d),
                Err(_) => usage("--date must be a local date YYYY-MM-DD"),
            }
        }
        _ => serve(config, config_path),
    }
}

fn report(
    config: config::Config,
    period: gatehouse::report::Period,
    date: Option<jiff::civil::Date>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gatehouse: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    done(runtime.block_on(async move {
        let md = app::report_once(config, period, date).await?;
        println!("{md}");
        Ok(())
    }))
}

fn serve(config: config::Config, config_path: Option<PathBuf>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gatehouse: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let watched = config_path.or_else(|| {
        let default = PathBuf::from(config::DEFAULT_FILE);
        default.is_file().then_some(default)
    });
    runtime.block_on(async move {
        let opts = app::Options {
            config_path: watched,
            ..app::Options::default()
        };
        match app::start(config, opts).await {
            Ok(app) => {
                app.run_until_signal().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gatehouse: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// How long `check` waits for each trace backend.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes each configured trace backend: one line each; failure when one rejects the keys or
/// cannot be reached.
fn check_traces(config: &config::Config) -> ExitCode {
    let exporter = match gatehouse::telemetry::otel::Exporter::build(&config.traces) {
        Ok(e) => e,
        Err(problems) => return bad_config(&problems.to_string()),
    };
    if exporter.backends.is_empty() {
        println!("traces: no backend configured (set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY, or traces.otlp)");
        return ExitCode::SUCCESS;
    }
    let checks = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            let client = app::side_client(CHECK_TIMEOUT)?;
            Ok(rt.block_on(gatehouse::telemetry::otel::check(
                &exporter,
                &client,
                CHECK_TIMEOUT,
            )))
        });
    let checks = match checks {
        Ok(c) => c,
        Err(e) => return done(Err(e)),
    };
    for c in &checks {
        let mark = if c.ok { "ok" } else { "FAILED" };
        println!("traces: {} ({}): {mark}: {}", c.backend, c.url, c.summary);
    }
    if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn done(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bad_config(problems: &str) -> ExitCode {
    eprintln!("gatehouse: the configuration is not valid:\n{problems}");
    ExitCode::from(EXIT_CONFIG)
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("gatehouse: {msg}\n\n{USAGE}");
    ExitCode::from(EXIT_CONFIG)
}
