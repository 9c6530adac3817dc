//! A transform that traps, loops or allocates without bound fails its run
//! promptly with an error naming it, delivers and commits nothing, and the
//! next run with a well-behaved config delivers everything.

use std::time::Duration;

use crate::changes::all_added;
use crate::support::config::Config;
use crate::support::events::assert_events;
use crate::support::fixture::misbehave_wasm;
use crate::support::project::Project;
use crate::support::warehouse::Warehouse;

/// Far above the 2 s call limit set below, far below the 30 s default.
const PROMPT: Duration = Duration::from_secs(60);

/// The failing transform is named by its plugin or its place in the chain.
pub fn names_the_transform(error: &str) -> bool {
    error.contains("misbehave") || error.contains("transform 1 of sync `users_out`")
}

/// The sync's chain: the misbehave fixture in `mode`, with tight limits.
pub fn transform(mode: &str) -> String {
    format!(
        "transforms = [{{ plugin = '{}', config = {{ mode = \"{mode}\" }}, timeout_secs = 2, memory_mb = 32 }}]",
        misbehave_wasm().display()
    )
}

/// Runs the misbehaving transform, checks the run failed naming it and
/// the next run is clean; what the failed run said.
fn misbehaving_transform_fails_the_run(mode: &str) -> String {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=5);
    project.write_config(&Config::new(&wh).sync(&transform(mode)).render());

    let run = project.run();
    run.assert_status("failed");
    assert!(
        run.output.elapsed < PROMPT,
        "mode {mode}: run took {:?}",
        run.output.elapsed
    );
    let error = format!("{} {}", run.report["error"], run.output.stderr);
    assert!(
        names_the_transform(&error),
        "mode {mode}: the error must name the transform: {error}"
    );
    assert_events(&project.take_delivered(), &[]);
    let history = project.history();
    assert_eq!(history[0]["status"], "failed", "{history:#?}");

    project.write_config(&Config::new(&wh).sync(&transform("ok")).render());
    project.run_ok();
    assert_events(&project.take_delivered(), &all_added(1..=5));
    error
}

#[test]
fn trapping_transform_fails_the_run() {
    misbehaving_transform_fails_the_run("trap");
}

#[test]
fn looping_transform_is_stopped_by_its_deadline() {
    misbehaving_transform_fails_the_run("loop");
}

#[test]
fn allocating_transform_is_stopped_by_its_memory_cap() {
    misbehaving_transform_fails_the_run("alloc");
}

#[test]
fn recursing_transform_is_reported_as_a_stack_overflow() {
    let error = misbehaving_transform_fails_the_run("recurse");
    assert!(error.contains("stack overflow"), "{error}");
}

/// A transform logging 16 MiB per event is cut off after its per-call
/// budget: the run succeeds, what the plugin logged is shown at `-v` under
/// `ebb::plugin` with the transform's label, and the log says how many lines
/// were dropped instead of holding them.
#[test]
fn a_flooding_transform_is_held_to_its_log_budget() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    project.write_config(&Config::new(&wh).sync(&transform("flood")).render());

    let out = project.ebb(&["-v", "run", "users_out", "--format", "json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_events(&project.take_delivered(), &all_added(1..=2));
    let stderr = &out.stderr;
    assert!(
        stderr.len() < 4 << 20,
        "the log holds {} bytes of a 32 MiB flood",
        stderr.len()
    );
    let plugin_line = stderr
        .lines()
        .find(|l| l.contains("ebb::plugin") && l.contains("xxxxxxxx"))
        .unwrap_or_else(|| {
            panic!(
                "no plugin log line at -v:\n{}",
                &stderr[..stderr.len().min(2000)]
            )
        });
    assert!(plugin_line.contains("transform 1"), "{plugin_line}");
    assert!(
        stderr.contains("log lines dropped"),
        "no note of the dropped lines:\n{}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
}

/// What a transform returns is held to `[limits]`: a change split into too
/// many events, an id or fields too large fail that change with a row
/// error naming the transform and the limit to raise; nothing is sent, and
/// a well-behaved transform delivers everything next run.
#[test]
fn transform_output_is_held_to_the_limits() {
    for (mode, n, limit, says) in [
        (
            "fanout",
            5,
            "split_events = 3",
            "split one event into 5 events, over the limit of 3; raise limits.split_events",
        ),
        (
            "long-id",
            300,
            "event_id_bytes = 256",
            "an event id of 300 bytes, over the limit of 256; raise limits.event_id_bytes",
        ),
        (
            "big-field",
            5000,
            "record_bytes = 4096",
            "over the limit of 4096; raise limits.record_bytes",
        ),
    ] {
        let project = Project::new();
        let wh = Warehouse::sqlite(&project);
        wh.insert_users(1..=3);
        let chain = format!(
            "transforms = [{{ plugin = '{}', config = {{ mode = \"{mode}\", n = {n} }} }}]",
            misbehave_wasm().display()
        );
        let config = Config::new(&wh).sync(&chain).render();
        project.write_config(&format!("{config}\n[limits]\n{limit}\n"));

        project.run().assert_status("failed");
        assert_events(&project.take_delivered(), &[]);
        let errors = project.errors();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        for error in &errors {
            let message = error["error"].as_str().unwrap_or_default();
            assert!(names_the_transform(message), "{mode}: {message}");
            assert!(message.contains(says), "{mode}: {message}");
        }

        project.write_config(&Config::new(&wh).sync(&transform("ok")).render());
        project.run_ok();
        assert_events(&project.take_delivered(), &all_added(1..=3));
    }
}
