//! How a worker process is started: the program, its arguments (the hidden subcommand named in
//! [`crate::process`]) and its environment, under an optional command prefix for debugging.

use std::path::PathBuf;

use crate::process;

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Extra environment variables (for example the log filter).
    pub envs: Vec<(String, String)>,
}

/// A command line that engine workers are started under (`valgrind`, `gdb --args`, or
/// `qemu-x86_64 -cpu Nehalem` to check the CPU variant choice of a release build), split on
/// whitespace. For debugging and tests; unset, the worker runs directly.
pub const WORKER_PREFIX_ENV: &str = "HEARTH_WORKER_PREFIX";

impl WorkerCommand {
    /// `BINARY engine`: an engine worker of the Hearth binary `binary` (under
    /// [`WORKER_PREFIX_ENV`]'s command when it is set).
    pub fn engine(binary: impl Into<PathBuf>) -> Self {
        Self::hidden_subcommand(binary.into(), process::ENGINE_SUBCOMMAND)
    }

    /// `BINARY probe-report`: the server's probe process of the Hearth binary `binary`; the
    /// data directory to probe with follows as the last argument, added where the process
    /// starts (a path need not be UTF-8). Under [`WORKER_PREFIX_ENV`]'s command, as engine
    /// workers are: the probe process starts one.
    pub fn probe_report(binary: impl Into<PathBuf>) -> Self {
        Self::hidden_subcommand(binary.into(), process::PROBE_REPORT_SUBCOMMAND)
    }

    fn hidden_subcommand(binary: PathBuf, subcommand: &str) -> Self {
        let prefix = std::env::var(WORKER_PREFIX_ENV).unwrap_or_default();
        Self::with_prefix(&prefix, binary, subcommand)
    }

    fn with_prefix(prefix: &str, binary: PathBuf, subcommand: &str) -> Self {
        let mut words = prefix.split_whitespace().map(str::to_string);
        let (program, mut args) = match words.next() {
            None => (binary, Vec::new()),
            Some(program) => {
                let mut args: Vec<String> = words.collect();
                args.push(binary.to_string_lossy().into_owned());
                (PathBuf::from(program), args)
            }
        };
        args.push(subcommand.to_string());
        Self {
            program,
            args,
            envs: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_prefix_wraps_the_engine_command() {
        let plain = WorkerCommand::with_prefix("  ", PathBuf::from("/opt/hearth"), "engine");
        assert_eq!(plain.program, PathBuf::from("/opt/hearth"));
        assert_eq!(plain.args, ["engine"]);
        let wrapped =
            WorkerCommand::with_prefix("qemu-x86_64 -cpu Nehalem", "/opt/hearth".into(), "engine");
        assert_eq!(wrapped.program, PathBuf::from("qemu-x86_64"));
        assert_eq!(wrapped.args, ["-cpu", "Nehalem", "/opt/hearth", "engine"]);
    }

    #[test]
    fn the_probe_command_is_the_probe_report_subcommand_under_the_same_prefix() {
        // Whatever HEARTH_WORKER_PREFIX says here, the subcommand comes last.
        let probe = WorkerCommand::probe_report("/opt/hearth");
        assert_eq!(probe.args.last().unwrap(), "probe-report");
        assert!(probe.envs.is_empty());
        let engine = WorkerCommand::engine("/opt/hearth");
        assert_eq!(engine.args.last().unwrap(), "engine");
        assert_eq!(probe.program, engine.program);
        let plain = WorkerCommand::with_prefix("", "/opt/hearth".into(), "probe-report");
        assert_eq!(plain.program, PathBuf::from("/opt/hearth"));
        assert_eq!(plain.args, ["probe-report"]);
        let wrapped = WorkerCommand::with_prefix(
            "valgrind --quiet",
            "/opt/hearth".into(),
            process::PROBE_REPORT_SUBCOMMAND,
        );
        assert_eq!(wrapped.program, PathBuf::from("valgrind"));
        assert_eq!(wrapped.args, ["--quiet", "/opt/hearth", "probe-report"]);
    }
}
