//! The outbox: every message as one JSON line in a file and/or a human line on stdout.
//! It is the demo's delivery channel and what tests read codes from.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;

use super::{Channel, Message, NotifyError};
use crate::config::Outbox;

pub(super) struct OutboxWriter {
    /// Opened with O_APPEND; the mutex keeps concurrent sends from interleaving in-process.
    file: Option<Mutex<tokio::fs::File>>,
    console: bool,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    ts: String,
    channel: Channel,
    user: &'a str,
    to: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    subject: &'a str,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered: Option<bool>,
}

impl OutboxWriter {
    pub(super) fn new(cfg: &Outbox) -> Result<Self, NotifyError> {
        let file = match &cfg.path {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        NotifyError::Outbox(format!("cannot open {}: {e}", path.display()))
                    })?;
                Some(Mutex::new(tokio::fs::File::from_std(f)))
            }
            None => None,
        };
        Ok(Self {
            file,
            console: cfg.console,
        })
    }

    /// `delivered` is `Some(false)` when a real transport was tried and failed (recorded
    /// as `"delivered": false`); `Some(true)` and `None` add nothing to the line.
    pub(super) async fn append(
        &self,
        msg: &Message,
        delivered: Option<bool>,
    ) -> Result<(), NotifyError> {
        if self.console {
            // By design the console is the demo's delivery channel, so the code is printed
            // here; never through `tracing`. Write errors (closed stdout) are ignored.
            let code = msg
                .code
                .as_deref()
                .map(|c| format!(": code {c}"))
                .unwrap_or_default();
            let channel = match msg.channel {
                Channel::Sms => "sms",
                Channel::Email => "email",
                Channel::Push => "push",
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "[nidan outbox] {channel} to {} for {}{code} — {}",
                msg.to, msg.user, msg.subject
            );
            let _ = out.flush();
        }
        let Some(file) = &self.file else {
            return Ok(());
        };
        let line = Line {
            ts: rfc3339_now(),
            channel: msg.channel,
            user: &msg.user,
            to: &msg.to,
            code: msg.code.as_deref(),
            subject: &msg.subject,
            body: &msg.body,
            delivered: delivered.filter(|d| !d),
        };
        let mut bytes = serde_json::to_vec(&line)
            .map_err(|e| NotifyError::Outbox(format!("cannot encode line: {e}")))?;
        bytes.push(b'\n');
        let mut f = file.lock().await;
        // One write_all of the whole line: with O_APPEND the line lands in one piece even
        // if another process appends to the same file.
        f.write_all(&bytes)
            .await
            .map_err(|e| NotifyError::Outbox(e.to_string()))?;
        f.flush()
            .await
            .map_err(|e| NotifyError::Outbox(e.to_string()))?;
        Ok(())
    }
}

/// Now as RFC 3339 UTC with milliseconds, e.g. `2026-05-01T09:30:00.123Z`.
fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::sync::Arc;

    use super::*;
    use crate::config::Notifiers;
    use crate::notify::Notifier;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_767_225_599, 999), "2025-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        let now = rfc3339_now();
        assert_eq!(now.len(), 24);
        assert!(now.ends_with('Z'));
    }

    fn msg(i: usize) -> Message {
        Message {
            channel: Channel::Sms,
            user: format!("user{i}"),
            to: "+81 90-1234-5678".into(),
            code: Some(format!("{i:06}")),
            subject: "確認コード".into(),
            body: "nidan: 確認コード \"quoted\"\nline".into(),
        }
    }

    #[tokio::test]
    async fn lines_are_json_with_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        let n = Notifier::new(&Notifiers {
            outbox: Some(Outbox {
                path: Some(path.clone()),
                console: true,
            }),
            ..Default::default()
        })
        .unwrap();
        n.send(&msg(7)).await.unwrap();
        let mut email = msg(8);
        email.channel = Channel::Email;
        email.to = "hanako@example.com".into();
        email.code = None;
        n.send(&email).await.unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["channel"], "sms");
        assert_eq!(lines[0]["user"], "user7");
        assert_eq!(lines[0]["to"], "+81 90-1234-5678");
        assert_eq!(lines[0]["code"], "000007");
        assert_eq!(lines[0]["subject"], "確認コード");
        assert_eq!(lines[0]["body"], "nidan: 確認コード \"quoted\"\nline");
        assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["channel"], "email");
        assert!(lines[1].get("code").is_none());
    }

    #[tokio::test]
    async fn concurrent_sends_give_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        let n = Arc::new(
            Notifier::new(&Notifiers {
                outbox: Some(Outbox {
                    path: Some(path.clone()),
                    console: false,
                }),
                ..Default::default()
            })
            .unwrap(),
        );
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let n = n.clone();
                tokio::spawn(async move {
                    let mut m = msg(i);
                    m.body = "x".repeat(4096 + i);
                    n.send(&m).await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut users: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let i: usize = v["user"].as_str().unwrap()[4..].parse().unwrap();
                assert_eq!(v["body"].as_str().unwrap().len(), 4096 + i);
                v["user"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(users.len(), 50);
        users.sort();
        users.dedup();
        assert_eq!(users.len(), 50);
    }
}
