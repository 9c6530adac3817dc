//! A model is one query. SQLite's driver would run every statement of a
//! model's text in turn, so a second statement is refused, naming the
//! model, before anything runs: by `check`, `preview`, `plan` and `run`.
//! Every source says so in the same words, and refuses a statement that
//! is not a query (`DROP TABLE`) the same way.

use crate::support::config::Config;
use crate::support::events::assert_events;
use crate::support::project::Project;
use crate::support::warehouse::Warehouse;

#[test]
fn a_sqlite_model_of_two_statements_is_refused_before_anything_runs() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    for second in [
        "SELECT 99 AS id, 'x' AS email, 'y' AS plan",
        "DELETE FROM users",
    ] {
        project.write_config(
            &Config::new(&wh)
                .query(&format!("SELECT id, email, plan FROM users; {second}"))
                .render(),
        );
        project.assert_every_command_refuses(&[
            "model `users`",
            "the query holds more than one statement",
        ]);
    }
    assert_events(&project.take_delivered(), &[]);
    assert_eq!(wh.scalar("SELECT COUNT(*) FROM users"), 3);

    // One query with a trailing `;` and a `;` inside a string is fine.
    project.write_config(
        &Config::new(&wh)
            .query("SELECT id, email, plan FROM users WHERE email <> ';';")
            .render(),
    );
    project.run_ok();
    assert_eq!(project.take_delivered().len(), 3);
}

#[test]
fn every_source_refuses_what_is_not_one_query_in_the_same_words() {
    let project = Project::new();
    let warehouses = [
        Some(Warehouse::sqlite(&project)),
        Warehouse::postgres(),
        Warehouse::mysql(),
    ];
    for wh in warehouses.iter().flatten() {
        wh.insert_users(1..=2);
        for (query, says) in [
            ("DROP TABLE users", "the query starts with `DROP`"),
            (
                "SELECT id, email, plan FROM users; SELECT 1",
                "the query holds more than one statement",
            ),
        ] {
            project.write_config(&Config::new(wh).query(query).render());
            project.assert_every_command_refuses(&[
                "model `users`",
                says,
                "Ebb only runs a single SELECT",
            ]);
        }
        assert_eq!(wh.scalar("SELECT COUNT(*) FROM users"), 2);
    }
}
