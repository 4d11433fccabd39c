//! `conveyor run`, driven through the real binary: placeholders, injection
//! safety, order, retries, timeouts that kill process groups, resume after a real
//! SIGKILL, exit statuses, signals and the absence of progress output off a TTY.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use conveyor_testkit::process::{pid_alive, Proc};
use serde_json::Value;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().expect("tempdir"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// `conveyor run ARGS…` in this directory.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_conveyor"));
        c.arg("run").args(args).current_dir(self.0.path());
        c
    }

    /// Runs it with `stdin` as input.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn conveyor");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        child.wait_with_output().expect("wait conveyor")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// `OPTS… -- sh -c SCRIPT _ {}`: the item is the script's `$1`.
fn sh<'a>(opts: &[&'a str], script: &'a str) -> Vec<&'a str> {
    let mut args = opts.to_vec();
    args.extend(["--", "sh", "-c", script, "_", "{}"]);
    args
}

/// Waits (at most 5 s) for a process to be gone.
fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    !pid_alive(pid)
}

fn results(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("results line is JSON"))
        .collect()
}

#[test]
fn placeholders_expand_into_single_arguments() {
    let d = Dir::new();
    let out = d.run(
        &[
            "-j",
            "1",
            "-k",
            "--",
            "printf",
            "[%s|%s|%s|%s]\n",
            "{}",
            "{2}",
            "{#}",
            "x{{}}",
        ],
        "alpha beta\ngamma delta epsilon\n",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "[alpha beta|beta|1|x{}]\n[gamma delta epsilon|delta|2|x{}]\n"
    );
    let out = d.run(&["-k", "-d", ",", "--", "echo", "{3}-{1}"], "a,b,c\n");
    assert_eq!(stdout(&out), "c-a\n");
    let out = d.run(
        &["--json", "-k", "--", "echo", "{.user.name}", "{.n}"],
        "{\"user\":{\"name\":\"Ann Lee\"},\"n\":3}\n",
    );
    assert_eq!(stdout(&out), "Ann Lee 3\n", "{}", stderr(&out));
    // No placeholder: the item is appended.
    let out = d.run(&["-k", "--", "echo", "item:"], "one\n");
    assert_eq!(stdout(&out), "item: one\n");
}

#[test]
fn hostile_items_reach_the_program_verbatim() {
    let d = Dir::new();
    d.write("a-file", "");
    d.write("b-file", "");
    let items = [
        "x; touch pwned1",
        "$(touch pwned2)",
        "`touch pwned3`",
        "it's \"quoted\"",
        "*",
        "a\\b | c && d",
    ];
    let out = d.run(
        &["-k", "--", "printf", "<%s>\n", "{}"],
        &(items.join("\n") + "\n"),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let expected: String = items.iter().map(|i| format!("<{i}>\n")).collect();
    assert_eq!(stdout(&out), expected);
    // A newline inside an item (NUL-separated input) also stays one argument.
    let out = d.run(&["-0", "--", "printf", "<%s>", "{}"], "two\nlines\0");
    assert_eq!(stdout(&out), "<two\nlines>\n");
    // --shell quotes every placeholder: the item is data, never code.
    let out = d.run(
        &["-k", "--shell", "--", "printf '%s\\n' {} | tr a-z A-Z"],
        &(items.join("\n") + "\n"),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let expected: String = items
        .iter()
        .map(|i| format!("{}\n", i.to_uppercase()))
        .collect();
    assert_eq!(stdout(&out), expected);
    for f in ["pwned1", "pwned2", "pwned3"] {
        assert!(!d.path(f).exists(), "{f} was created: an item ran as code");
    }
}

#[test]
fn keep_order_prints_in_input_order_and_outputs_never_mix() {
    let d = Dir::new();
    // Later items finish first; each prints three lines.
    let script = "sleep 0.$((9 - $1)); echo \"$1 a\"; echo \"$1 b\"; printf \"$1 c\"";
    let input: String = (1..=8).map(|i| format!("{i}\n")).collect();
    let out = d.run(&sh(&["-j", "8", "-k"], script), &input);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let expected: String = (1..=8).map(|i| format!("{i} a\n{i} b\n{i} c\n")).collect();
    assert_eq!(stdout(&out), expected, "missing final newlines are added");
    // Without -k: completion order, but each task's lines stay together.
    let out = d.run(&sh(&["-j", "8"], script), &input);
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 24);
    for chunk in lines.chunks(3) {
        let n = chunk[0].split(' ').next().unwrap();
        assert_eq!(
            chunk,
            [format!("{n} a"), format!("{n} b"), format!("{n} c")]
        );
    }
}

#[test]
fn retries_run_failed_items_again() {
    let d = Dir::new();
    // Fails twice, then succeeds.
    let script =
        "f=count-$1; n=$(cat $f 2>/dev/null || echo 0); n=$((n+1)); echo $n > $f; [ $n -ge 3 ]";
    let out = d.run(
        &sh(
            &[
                "--retries",
                "2",
                "--retry-delay",
                "10ms",
                "--results",
                "r.jsonl",
            ],
            script,
        ),
        "a\nb\n",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = results(&d.path("r.jsonl"));
    assert_eq!(recs.len(), 2);
    for r in &recs {
        assert_eq!(r["status"], "succeeded");
        assert_eq!(r["attempts"], 3);
        assert_eq!(r["exit_code"], 0);
    }
    // One retry is not enough for fresh items: both fail, exit status 2.
    let out = d.run(
        &sh(&["--retries", "1", "--retry-delay", "10ms"], script),
        "c\nd\n",
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("after 2 attempts"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn timeouts_kill_the_whole_process_group() {
    let d = Dir::new();
    // The item's shell starts a grandchild and waits; both write their pids.
    let script = "sleep 60 & echo $! > $1.child; echo $$ > $1.pid; wait";
    let out = d.run(
        &sh(&["--timeout", "300ms", "--results", "r.jsonl"], script),
        "one\ntwo\n",
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let recs = results(&d.path("r.jsonl"));
    assert!(recs.iter().all(|r| r["status"] == "timed_out"), "{recs:?}");
    assert!(
        stderr(&out).contains("timed out after 300ms"),
        "{}",
        stderr(&out)
    );
    for item in ["one", "two"] {
        for kind in ["pid", "child"] {
            let pid: u32 = d
                .read(&format!("{item}.{kind}"))
                .trim()
                .parse()
                .expect("pid written");
            assert!(
                gone(pid),
                "{item}'s {kind} (pid {pid}) outlived its timeout"
            );
        }
    }
}

#[test]
fn exit_status_counts_failures() {
    let d = Dir::new();
    let ok = d.run(&["--", "true"], "1\n2\n3\n");
    assert_eq!(code(&ok), 0);
    let three = d.run(
        &["--", "sh", "-c", "[ $1 -gt 3 ]", "_", "{}"],
        "1\n2\n3\n4\n5\n",
    );
    assert_eq!(code(&three), 3, "{}", stderr(&three));
    let many: String = (1..=105).map(|i| format!("{i}\n")).collect();
    let out = d.run(&["-q", "--", "false"], &many);
    assert_eq!(code(&out), 101, "more than 100 failures");
    assert_eq!(stderr(&out), "", "--quiet prints only errors");
    let missing = d.run(&["--input", "no-such-file", "--", "true"], "");
    assert_eq!(code(&missing), 255);
    assert!(
        stderr(&missing).contains("cannot read no-such-file"),
        "{}",
        stderr(&missing)
    );
    let no_program = d.run(&["--", "no-such-program-xyz"], "1\n");
    assert_eq!(code(&no_program), 255);
    assert!(
        stderr(&no_program).contains("not found"),
        "{}",
        stderr(&no_program)
    );
    let bad = d.run(&["--", "echo", "{nope}"], "1\n");
    assert_eq!(code(&bad), 255);
    assert!(
        stderr(&bad).contains("unknown placeholder {nope}"),
        "{}",
        stderr(&bad)
    );
    let usage = d.run(&["--no-such-flag", "--", "true"], "");
    assert_eq!(code(&usage), 255);
}

#[test]
fn invalid_json_lines_fail_alone_and_are_named() {
    let d = Dir::new();
    let out = d.run(
        &["--json", "-k", "--", "echo", "{.n}"],
        "{\"n\":1}\n{not json\n{\"n\":3}\n{\"m\":4}\n",
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(stdout(&out), "1\n3\n");
    let err = stderr(&out);
    assert!(err.contains("line 2: invalid JSON"), "{err}");
    assert!(err.contains("line 4: the item has no field .n"), "{err}");
}

#[test]
fn no_progress_output_when_stderr_is_not_a_terminal() {
    let d = Dir::new();
    let input: String = (1..=20).map(|i| format!("{i}\n")).collect();
    let out = d.run(&["-j", "4", "--", "true"], &input);
    assert_eq!(code(&out), 0);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "only the summary: {err:?}");
    assert!(
        err.starts_with("conveyor run: 20 succeeded, 0 failed in "),
        "{err:?}"
    );
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
}

#[test]
#[cfg_attr(
    not(has_script),
    ignore = "script is not installed (Debian package bsdutils)"
)]
fn a_terminal_gets_a_progress_bar() {
    // `script` gives the run a pseudo-terminal.
    let script = conveyor_testkit::programs::SCRIPT.require();
    let d = Dir::new();
    d.write(
        "items",
        &(1..=30).map(|i| format!("{i}\n")).collect::<String>(),
    );
    let cmd = format!(
        "{} run -j 2 --input items -- sh -c 'sleep 0.02'",
        env!("CARGO_BIN_EXE_conveyor")
    );
    let out = Command::new(script)
        .args(["-qefc", &cmd, "/dev/null"])
        .current_dir(d.0.path())
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let all = String::from_utf8_lossy(&out.stdout);
    assert!(all.contains("/30"), "the bar shows done/total: {all:?}");
    assert!(all.contains("30 succeeded"), "{all:?}");
}

#[test]
fn halt_on_error_stops_starting_items() {
    let d = Dir::new();
    let input: String = (1..=50).map(|i| format!("{i}\n")).collect();
    let out = d.run(
        &[
            "-j",
            "1",
            "--halt-on-error",
            "--",
            "sh",
            "-c",
            "echo $1 >> ran; [ $1 != 5 ]",
            "_",
            "{}",
        ],
        &input,
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let ran = d.read("ran").lines().count();
    assert!(
        (5..=7).contains(&ran),
        "{ran} items ran after halting at item 5"
    );
    assert!(stderr(&out).contains("halting"), "{}", stderr(&out));
    let out = d.run(
        &[
            "-j",
            "1",
            "--max-failures",
            "3",
            "--",
            "sh",
            "-c",
            "echo $1 >> ran2; [ $(($1 % 2)) = 0 ]",
            "_",
            "{}",
        ],
        &input,
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(d.read("ran2").lines().count() <= 8);
}

#[test]
fn results_file_has_one_object_per_item() {
    let d = Dir::new();
    let out = d.run(
        &[
            "--results",
            "r.jsonl",
            "--results-cap",
            "4",
            "--",
            "sh",
            "-c",
            "echo hello-$1; echo oops >&2; [ $1 = a ]",
            "_",
            "{}",
        ],
        "a\nb\n",
    );
    assert_eq!(code(&out), 1);
    let mut recs = results(&d.path("r.jsonl"));
    recs.sort_by_key(|r| r["seq"].as_u64());
    assert_eq!(recs.len(), 2);
    let a = &recs[0];
    assert_eq!(a["item"], "a");
    assert_eq!(a["argv"][0], "sh");
    assert_eq!(a["argv"][4], "a");
    assert_eq!(a["status"], "succeeded");
    assert_eq!(a["stdout"], "hell", "capped at --results-cap");
    assert_eq!(a["stdout_truncated"], true);
    assert_eq!(a["stderr"], "oops");
    assert_eq!(a["attempts"], 1);
    assert!(a["start"].as_str().unwrap().ends_with('Z'));
    assert!(a["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(recs[1]["status"], "failed");
    assert_eq!(recs[1]["exit_code"], 1);
    // The printed output is not capped by --results-cap.
    assert!(stdout(&out).contains("hello-a\n") && stdout(&out).contains("hello-b\n"));
}

#[test]
fn state_skips_done_items_and_reruns_failures_on_request() {
    let d = Dir::new();
    d.write("fail-2", "");
    let script = "echo $1 >> ran; [ ! -e fail-$1 ]";
    let args = [
        "-j", "1", "--state", "s.db", "--", "sh", "-c", script, "_", "{}",
    ];
    let out = d.run(&args, "1\n2\n3\n");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // Nothing new: succeeded items never run again, the failed one is not retried.
    let out = d.run(&args, "1\n2\n3\n");
    assert_eq!(code(&out), 1, "the earlier failure still counts");
    assert!(
        stderr(&out).contains("3 done earlier (1 failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(d.read("ran").lines().count(), 3);
    // A longer input runs only the new items.
    let out = d.run(&args, "1\n2\n3\n4\n");
    assert_eq!(code(&out), 1);
    assert_eq!(d.read("ran"), "1\n2\n3\n4\n");
    std::fs::remove_file(d.path("fail-2")).unwrap();
    let mut retry = vec!["--retry-failed"];
    retry.extend(args);
    let out = d.run(&retry, "1\n2\n3\n4\n");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(d.read("ran"), "1\n2\n3\n4\n2\n");
    // Another command on the same state file is refused, and the file survives.
    let out = d.run(&["--state", "s.db", "--", "echo"], "1\n");
    assert_eq!(code(&out), 255);
    assert!(
        stderr(&out).contains("records another command"),
        "{}",
        stderr(&out)
    );
    let out = d.run(&args, "1\n2\n3\n4\n");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("4 done earlier"), "{}", stderr(&out));
}

/// Items printed (so recorded) before a SIGKILL of conveyor never run again;
/// nothing is lost; an item runs twice only if it had started and its outcome
/// was not recorded at the kill (in flight, or finished while the reporter had
/// not committed it yet — how many of those there are depends on how far the
/// reporter lagged on a loaded machine, so it is reported, not bounded).
#[test]
fn resume_after_sigkill_loses_nothing_and_reruns_nothing_done() {
    let d = Dir::new();
    let n = 120;
    d.write(
        "items",
        &(1..=n).map(|i| format!("{i}\n")).collect::<String>(),
    );
    let script = "echo $1 >> ran; sleep 0.03; echo done $1";
    let args = [
        "-j", "6", "--input", "items", "--state", "s.db", "--", "sh", "-c", script, "_", "{}",
    ];
    let mut first = Proc::spawn(d.cmd(&args)).expect("spawn");
    let mut printed = HashSet::new();
    while printed.len() < 30 {
        let line = first
            .next_line(Duration::from_secs(30))
            .expect("output before the kill");
        printed.insert(line.trim_start_matches("done ").to_string());
    }
    first.kill9();
    // Output already in the pipe was printed before the kill, so it counts too.
    for line in first.drain_lines() {
        printed.insert(line.trim_start_matches("done ").to_string());
    }
    std::thread::sleep(Duration::from_millis(200)); // orphaned items finish
    let started_before: HashSet<String> = d.read("ran").lines().map(str::to_string).collect();
    let out = d.cmd(&args).output().expect("second run");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let second: HashSet<String> = stdout(&out)
        .lines()
        .map(|l| l.trim_start_matches("done ").to_string())
        .collect();
    assert!(
        printed.is_disjoint(&second),
        "an item printed before the kill ran again"
    );
    let mut runs: HashMap<String, usize> = HashMap::new();
    for item in d.read("ran").lines() {
        *runs.entry(item.to_string()).or_default() += 1;
    }
    for i in 1..=n {
        assert!(runs.contains_key(&i.to_string()), "item {i} never ran");
    }
    let twice: Vec<_> = runs.iter().filter(|(_, c)| **c > 1).collect();
    eprintln!(
        "items run twice (started, not recorded at the kill): {}",
        twice.len()
    );
    for (item, count) in &twice {
        assert_eq!(**count, 2, "item {item} ran {count} times");
        assert!(
            !printed.contains(*item),
            "item {item} was printed and still ran twice"
        );
        assert!(
            started_before.contains(*item),
            "item {item} ran twice without having started before the kill"
        );
    }
}

#[test]
fn first_signal_drains_second_kills() {
    let d = Dir::new();
    d.write(
        "items",
        &(1..=20).map(|i| format!("{i}\n")).collect::<String>(),
    );
    let script = "echo $1 >> started; sleep 0.5; echo done $1";
    let mut p = Proc::spawn(d.cmd(&sh(&["-j", "2", "--input", "items"], script))).expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.read("started").lines().count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    p.signal(libc::SIGINT);
    let status = p
        .wait_exit(Duration::from_secs(10))
        .expect("exits after draining");
    assert_eq!(status.code(), Some(130));
    let started = d.read("started").lines().count();
    let mut done = 0;
    while p.next_line(Duration::from_millis(100)).is_some() {
        done += 1;
    }
    assert_eq!(
        done, started,
        "every started item finished; none started after the signal"
    );
    assert!(started < 20);

    // Twice: the running items are killed with their process groups.
    let script = "echo $$ >> pids; sleep 60";
    let mut p = Proc::spawn(d.cmd(&sh(&["-j", "2", "--input", "items"], script))).expect("spawn");
    while d.read("pids").lines().count() < 2 && Instant::now() < deadline + Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    p.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        p.wait_exit(Duration::from_millis(300)).is_none(),
        "waits for running items"
    );
    p.signal(libc::SIGTERM);
    let status = p
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the second signal");
    assert_eq!(status.code(), Some(143));
    for pid in d.read("pids").lines() {
        let pid: u32 = pid.parse().unwrap();
        assert!(gone(pid), "item process {pid} outlived the second signal");
    }
}
