//! Rolling upgrades across replicas (issue 25 item 5): the records replicas share, in the
//! format of today, are kept as fixtures (`fixtures/v1/`) and must stay readable — by this
//! version and, since each is tolerant of what it does not know, by the next. A change that
//! breaks the readers of the previous format fails here, not in a deploy. What a newer
//! version may add (fields, statuses, bus message kinds) is read safely.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::path::PathBuf;

use nidan::login::flow::{Flow, Stage};
use nidan::replica::Event;
use nidan::state::ApprovalStatus;

fn fixture(name: &str) -> String {
    let path: PathBuf = crate::common::repo()
        .join("tests/it/fixtures/v1")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn login_flows_of_the_previous_format_still_read() {
    let f: Flow = serde_json::from_str(&fixture("flow-code.json")).unwrap();
    assert_eq!(f.user_id, "hanako");
    assert_eq!(f.stage, Stage::AwaitingFactors);
    assert!(f.code.is_some() && f.requires_two);
    let f: Flow = serde_json::from_str(&fixture("flow-step-up.json")).unwrap();
    assert_eq!(f.stage, Stage::PasswordProved);
    assert_eq!(f.network.unwrap().to_string(), "192.0.2.0/24");
    assert!(f.step_up.is_some());
    // Written back, a flow keeps every field the previous format had (a reader of that
    // format finds what it needs).
    let old: serde_json::Value = serde_json::from_str(&fixture("flow-step-up.json")).unwrap();
    let new = serde_json::to_value(&f).unwrap();
    for key in old.as_object().unwrap().keys() {
        assert!(
            new.get(key).is_some(),
            "the field {key} is no longer written"
        );
    }
}

#[test]
fn fields_a_newer_version_adds_are_ignored() {
    let mut v: serde_json::Value = serde_json::from_str(&fixture("flow-code.json")).unwrap();
    v["added_by_a_newer_version"] = serde_json::json!({"anything": [1, 2]});
    v["plan"]["also_new"] = serde_json::json!(true);
    let f: Flow = serde_json::from_value(v).unwrap();
    assert_eq!(f.user_id, "hanako");
}

#[test]
fn bus_messages_of_the_previous_format_still_read_and_unknown_ones_flush() {
    let expected = [
        Event::Sessions {
            ids: vec!["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()],
        },
        Event::Devices {
            ids: vec!["dev-1".into(), "dev-2".into()],
        },
        Event::Setting {
            user: "taro".into(),
        },
        Event::Basic,
        Event::Users,
        Event::Phones,
        Event::Flush,
    ];
    let text = fixture("bus-events.jsonl");
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), expected.len());
    for (line, want) in lines.iter().zip(&expected) {
        assert_eq!(&Event::decode(line.as_bytes()), want, "{line}");
        // This version writes what the previous one reads.
        assert_eq!(Event::decode(&want.encode()), *want);
    }
    // A newer version's message kind, or format, drops every cache: always safe.
    for newer in [
        r#"{"v":1,"t":"passkeys","ids":["p1"]}"#,
        r#"{"v":2,"t":"sessions","ids":["x"]}"#,
        "not json",
    ] {
        assert_eq!(Event::decode(newer.as_bytes()), Event::Flush, "{newer}");
    }
    // An added field is ignored.
    let more = r#"{"v":1,"t":"setting","user":"taro","why":"admin"}"#;
    assert_eq!(
        Event::decode(more.as_bytes()),
        Event::Setting {
            user: "taro".into()
        }
    );
}

#[test]
fn approval_statuses_of_every_version_read() {
    for (text, status) in [
        ("pending", ApprovalStatus::Pending),
        ("approved", ApprovalStatus::Approved),
        ("denied", ApprovalStatus::Denied),
        ("expired", ApprovalStatus::Expired),
        ("wrong_number", ApprovalStatus::WrongNumber),
        ("not_me", ApprovalStatus::NotMe),
    ] {
        assert_eq!(ApprovalStatus::parse(text), Some(status));
        assert_eq!(status.as_str(), text);
    }
    // A newer version's status is a refusal here, not a corrupt record (503).
    assert_eq!(
        ApprovalStatus::parse("escalated"),
        Some(ApprovalStatus::Unknown)
    );
}
