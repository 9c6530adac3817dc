//! What a plugin must never reach: the files Ebb itself reads and runs.
//! A folder granted to a plugin may not hold the config, the state store,
//! the compilation cache or any plugin's component, and a precompiled
//! artifact that is not the one Ebb wrote is recompiled, never run. What
//! a plugin or a destination says in an error is kept only up to
//! `limits.error_text_bytes`.

use sha2::{Digest, Sha256};

use crate::changes::all_added;
use crate::support::config::{Config, plugin_cache};
use crate::support::events::assert_events;
use crate::support::fixture::{
    misbehave_wasm, rogue_destination_wasm, rogue_transform_wasm, shape_mismatch_wasm,
};
use crate::support::project::{Project, SYNC};
use crate::support::server::Server;
use crate::support::warehouse::Warehouse;
use crate::transform_limits::transform;

#[test]
fn a_granted_folder_may_not_hold_what_ebb_runs() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    let cache_inside = plugin_cache().join("out");
    let plugin_folder = misbehave_wasm()
        .parent()
        .expect("fixture folder")
        .to_owned();
    for (dir, holds) in [
        (".".to_owned(), "the config file"),
        (".ebb".to_owned(), "the state store"),
        (
            cache_inside.display().to_string(),
            "is inside the plugin cache",
        ),
        (
            plugin_folder.display().to_string(),
            "the component of transform",
        ),
    ] {
        let config = Config::new(&wh)
            .destination_setting(&format!("allow_dir = '{dir}'"))
            .sync(&transform("ok"));
        // The file destination's own grant comes first; the one under test
        // replaces it.
        let toml = config.render().replacen("allow_dir = \"out\"\n", "", 1);
        project.write_config(&toml);
        let out = project.ebb(&["check"]);
        assert_ne!(out.code, Some(0), "allow_dir = {dir:?} was accepted");
        for needle in ["destinations.out.allow_dir", holds] {
            assert!(
                out.text().contains(needle),
                "allow_dir = {dir:?}: must say {needle:?}: {}",
                out.text()
            );
        }
    }
}

/// Another plugin's genuine artifact copied over the file destination's
/// (what a plugin able to write the cache would do) is not run: the run
/// recompiles the destination and delivers as it should.
#[test]
fn a_swapped_cache_artifact_is_recompiled_not_run() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let toml = Config::new(&wh).sync(&transform("ok")).render();
    let own_cache = plugin_cache().display().to_string();
    project.write_config(&toml.replace(&own_cache, ".ebb/cache"));
    project.run_ok();
    assert_events(&project.take_delivered(), &all_added(1..=3));

    let misbehave = hex::encode(Sha256::digest(
        std::fs::read(misbehave_wasm()).expect("fixture"),
    ));
    let artifacts: Vec<_> = std::fs::read_dir(project.path(".ebb/cache"))
        .expect("the cache")
        .map(|e| e.expect("cache entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    let (transform_artifact, destination_artifact) = match &artifacts[..] {
        [a, b] if a.to_string_lossy().contains(&misbehave) => (a, b),
        [a, b] if b.to_string_lossy().contains(&misbehave) => (b, a),
        other => panic!("expected two artifacts, found {other:?}"),
    };
    let genuine = std::fs::read(destination_artifact).expect("artifact");
    std::fs::copy(transform_artifact, destination_artifact).expect("swap");

    wh.insert_users(4..=5);
    project.run_ok();
    assert_events(&project.take_delivered(), &all_added(4..=5));
    assert!(
        std::fs::read(destination_artifact).expect("artifact") == genuine,
        "the destination's artifact is written again"
    );
}

/// A destination refusing a record with a 1 MiB message: the row error,
/// the history and the run report keep a few KiB of it, saying it was cut.
#[test]
fn a_destinations_huge_error_is_kept_cut_to_the_limit() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    let server = Server::start();
    server.reject("2", &"e".repeat(1 << 20));
    let config = Config::new(&wh).http(&server, &server.host(), 10).render();
    project.write_config(&format!("{config}\n[limits]\nerror_text_bytes = 2048\n"));
    project.run().assert_status("partial");

    let errors = project.errors();
    let message = errors[0]["error"].as_str().expect("message");
    assert!(message.len() < 2048 + 100, "{} bytes kept", message.len());
    assert!(
        message.ends_with("cut at limits.error_text_bytes)"),
        "{message:.200}"
    );
    let shown = project.ebb_ok(&["errors", SYNC]);
    assert!(shown.len() < 64 << 10, "{} bytes shown", shown.len());
}

/// A transform whose types differ from the contract version it claims is
/// refused by every command before a row is read.
#[test]
fn a_component_of_the_wrong_shape_is_refused_before_anything_runs() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    let transform = format!(
        "transforms = [{{ plugin = '{}' }}]",
        shape_mismatch_wasm().display()
    );
    project.write_config(&Config::new(&wh).sync(&transform).render());
    for args in [&["check"][..], &["plan", SYNC], &["run", SYNC]] {
        let out = project.ebb(args);
        assert_ne!(out.code, Some(0), "ebb {args:?} went ahead");
        assert!(
            out.text()
                .contains("ebb_shape_mismatch.wasm cannot be instantiated"),
            "ebb {args:?}: {}",
            out.text()
        );
    }
    assert_events(&project.take_delivered(), &[]);
}

/// The rogue destination in `mode`, granted the folder `out`.
fn rogue(wh: &Warehouse, mode: &str) -> String {
    Config::new(wh)
        .destination(&format!(
            "[destinations.out]\nplugin = '{}'\nallow_dir = \"out\"\nconfig = {{ mode = \"{mode}\" }}\n",
            rogue_destination_wasm().display()
        ))
        .sync("retry = { max_attempts = 1 }")
        .render()
}

/// A destination answering a batch with too few outcomes fails that batch
/// naming the plugin and the breach; every change stays owed and the next
/// run with an honest destination delivers them all.
#[test]
fn a_destination_answering_too_few_outcomes_loses_nothing() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    project.write_config(&rogue(&wh, "short"));
    let run = project.run();
    assert_ne!(run.status(), "success");
    assert_eq!(run.count("ok"), 0, "{:#?}", run.report);
    let said = format!("{} {:?}", run.output.text(), project.errors());
    for needle in ["destination `out`", "2 outcomes for a batch of 3"] {
        assert!(said.contains(needle), "must say {needle:?}: {said}");
    }

    project.write_config(&rogue(&wh, "ok"));
    let run = project.run_ok();
    assert_eq!(run.count("ok"), 3, "{:#?}", run.report);
    assert!(project.errors().is_empty());
}

/// A destination looking for the host's files, folders, environment and
/// arguments finds none of them: it rejects any event if it does.
#[test]
fn a_destination_sees_nothing_of_the_host() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    project.write_config(&rogue(&wh, "probe"));
    let run = project.run();
    assert_eq!(run.status(), "success", "{:#?}", project.errors());
    assert_eq!(run.count("ok"), 2);
    assert!(!project.root().join("escaped").exists());
}

/// A transform returning fields that are not JSON, or more items than the
/// batch has events, fails the run naming itself and the breach; nothing
/// is delivered or committed, and the next run delivers every row.
#[test]
fn a_transform_breaking_the_contract_loses_nothing() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let chain = |mode: &str| {
        format!(
            "transforms = [{{ plugin = '{}', config = \"{mode}\" }}]",
            rogue_transform_wasm().display()
        )
    };
    for (mode, says) in [
        ("bad-json", "is not a JSON object"),
        ("extra", "apply returned 4 items for a batch of 3 events"),
    ] {
        project.write_config(&Config::new(&wh).sync(&chain(mode)).render());
        let run = project.run();
        assert_ne!(run.status(), "success", "{mode}");
        let said = format!("{} {:?}", run.output.text(), project.errors());
        for needle in ["ebb_rogue_transform", says] {
            assert!(said.contains(needle), "{mode}: must say {needle:?}: {said}");
        }
        assert_events(&project.take_delivered(), &[]);
    }
    project.write_config(&Config::new(&wh).sync(&chain("keep")).render());
    project.run_ok();
    assert_events(&project.take_delivered(), &all_added(1..=3));
}
