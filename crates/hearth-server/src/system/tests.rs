//! Tests of the machine report: the probe process, its failures, the report's shape.

use super::*;
use hearth_supervisor::process::PROBE_REPORT_SUBCOMMAND;

/// A probe process that runs `script` with `sh` (`$1` is the subcommand, `$2` the data
/// directory), as [`WorkerCommand::probe_report`] would start it for a binary run by `sh -c
/// script`.
#[cfg(unix)]
fn sh_probe(script: &str) -> WorkerCommand {
    WorkerCommand {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            script.into(),
            "sh".into(),
            PROBE_REPORT_SUBCOMMAND.into(),
        ],
        envs: Vec::new(),
    }
}

#[cfg(unix)]
fn machine_probed_by(home: &Path, script: &str) -> MachineInfo {
    MachineInfo::new(
        home.to_path_buf(),
        SocketAddr::from(([127, 0, 0, 1], 4327)),
        Some(sh_probe(script)),
    )
}

/// The report comes from the child process (its CPU is the fixture's), once: concurrent
/// callers share one run, and later calls are instant.
#[cfg(unix)]
#[tokio::test]
async fn the_machine_is_probed_once_by_a_child_process_and_remembered() {
    let home = tempfile::tempdir().unwrap();
    let mut fixture = ProbeReport {
        profile: hearth_probe::profile::fixtures::laptop_8gb_no_gpu(),
        ..ProbeReport::empty()
    };
    fixture.profile.cpu.model = "CPU seen by the probe process".into();
    let report_file = home.path().join("report.json");
    std::fs::write(&report_file, serde_json::to_string(&fixture).unwrap()).unwrap();
    let runs = home.path().join("runs");
    let script = format!(
        "[ \"$1\" = {PROBE_REPORT_SUBCOMMAND} ] && [ \"$2\" = '{home}' ] || exit 3
         echo $$ >> '{runs}'
         echo 'a driver talking on stdout'
         cat '{report}'",
        home = home.path().display(),
        runs = runs.display(),
        report = report_file.display(),
    );
    let machine = Arc::new(machine_probed_by(home.path(), &script));
    let (first, second) = tokio::join!(machine.report(), machine.report());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(machine.probe_error(), None);
    assert!(Arc::ptr_eq(&first, &second), "one probe for both");
    assert_eq!(first.profile, fixture.profile);
    let pids = std::fs::read_to_string(&runs).unwrap();
    let pids: Vec<u32> = pids.lines().map(|pid| pid.parse().unwrap()).collect();
    assert_eq!(pids.len(), 1, "one probe process");
    assert_ne!(pids[0], std::process::id());
    let started = std::time::Instant::now();
    let again = machine.report().await.unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert!(started.elapsed() < Duration::from_millis(50));
    // The memory is read again, in this process, on every use; the rest is the child's.
    let current = machine.current_report().await.unwrap();
    assert_eq!(
        current.profile.memory.total_bytes,
        hearth_probe::probe::current_memory().total_bytes
    );
    assert_eq!(current.profile.cpu, fixture.profile.cpu);
    let probe = probe_json(&current);
    crate::wire::assert_sorted(&probe);
    let json = serde_json::to_value(probe).unwrap();
    assert_eq!(json["cpu"]["model"], "CPU seen by the probe process");
    assert!(json["gpus"].is_array());
}

/// A probe process that prints garbage, prints nothing, cannot start or prints too much
/// gives a clear error, and the server describes the machine without it.
#[cfg(unix)]
#[tokio::test]
async fn a_failed_probe_process_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let machine = machine_probed_by(home.path(), "echo 'not a report'");
    let report = machine.report().await.unwrap();
    let error = machine.probe_error().unwrap();
    assert!(
        error.starts_with("the hardware probe's report is unreadable (exit status: 0)"),
        "{error}"
    );
    assert!(report.profile.cpu.logical_cores >= 1);
    assert!(report.profile.memory.total_bytes > 0);
    assert!(report.adapters.is_empty() && report.llama_devices.is_none());

    let data_dir = home.path();
    let run = |script: &str| {
        let command = sh_probe(script);
        async move { probe_in_child(&command, data_dir, PROBE_TIMEOUT).await }
    };
    let error = run("exit 7").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "the hardware probe ended (exit status: 7) without a report"
    );
    let error = run("head -c 2000000 /dev/zero").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "the hardware probe printed more than 1048576 bytes"
    );
    let missing = WorkerCommand::probe_report(crate::test_support::MISSING_PROGRAM);
    let error = probe_in_child(&missing, data_dir, PROBE_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot start the hardware probe: "),
        "{error}"
    );
    let machine = MachineInfo::new(
        data_dir.to_path_buf(),
        SocketAddr::from(([127, 0, 0, 1], 4327)),
        Some(missing),
    );
    assert!(machine.report().await.is_some());
    assert!(machine.probe_error().is_some());
}

/// A probe process that hangs is killed after the timeout: the server does not hang.
#[cfg(unix)]
#[tokio::test]
async fn a_hanging_probe_process_is_stopped() {
    let home = tempfile::tempdir().unwrap();
    let pid_file = home.path().join("pid");
    let script = format!("echo $$ > '{}'; exec sleep 600", pid_file.display());
    let mut machine = machine_probed_by(home.path(), &script);
    let timeout = Duration::from_millis(500);
    machine.probe_timeout = timeout;
    let started = std::time::Instant::now();
    let report = machine.report().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        machine.probe_error(),
        Some("the hardware probe did not finish within 500ms and was stopped")
    );
    assert!(report.profile.memory.total_bytes > 0);
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the probe process was killed and reaped"
    );
}

#[tokio::test]
async fn a_fixture_report_keeps_its_memory() {
    let fixture = hearth_probe::profile::fixtures::laptop_8gb_no_gpu();
    let machine = MachineInfo::with_report(ProbeReport {
        profile: fixture.clone(),
        ..ProbeReport::empty()
    });
    let current = machine.current_report().await.unwrap();
    assert_eq!(current.profile.memory, fixture.memory);
    assert!(MachineInfo::unknown().current_report().await.is_none());
}

#[test]
fn figures_for_people_are_rounded() {
    assert_eq!(round_to(12.3456, 1), 12.3);
    assert_eq!(round_to(0.05, 0), 0.0);
}
