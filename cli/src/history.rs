//! `hoist ctl history`: the generations of this boot as a table or JSON, with wall-clock
//! times in UTC, formatted here (the civil calendar from a day count, no date crate).

use hoist_api::pb;

use crate::rollout::change_json;

/// `YYYY-MM-DD HH:MM:SS` in UTC for seconds since the epoch (negative is before 1970).
pub fn utc_text(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01, proleptic Gregorian.
/// Howard Hinnant's `civil_from_days`: count in 400-year eras starting on March 1, so the
/// leap day is the last day of its year and needs no special case.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `sha256:0123456789abcdef...` as its first 12 hex digits.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// The table, the current generation marked with `*`.
pub fn table(reply: &pb::HistoryReply) -> Vec<String> {
    let mut lines = vec![format!("  {:<4} {:<19} {:<12} {:<11} DETAIL", "GEN", "TIME (UTC)", "DIGEST", "RESULT")];
    for g in &reply.generations {
        let mark = if g.id == reply.current { '*' } else { ' ' };
        let line = format!(
            "{mark} {:<4} {:<19} {:<12} {:<11} {}",
            g.id,
            utc_text(g.time_unix),
            short_digest(&g.digest),
            g.result,
            g.detail
        );
        lines.push(line.trim_end().to_string());
    }
    lines
}

pub fn json(reply: &pb::HistoryReply) -> serde_json::Value {
    let generations: Vec<_> = reply
        .generations
        .iter()
        .map(|g| {
            serde_json::json!({
                "id": g.id, "time_unix": g.time_unix, "digest": g.digest, "result": g.result,
                "detail": g.detail, "plan": g.plan.iter().map(change_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "current": reply.current, "generations": generations })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00");
        assert_eq!(utc_text(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc_text(1_709_164_800), "2024-02-29 00:00:00"); // a leap day
        assert_eq!(utc_text(1_709_164_800 + 86_399), "2024-02-29 23:59:59");
        assert_eq!(utc_text(1_709_164_800 + 86_400), "2024-03-01 00:00:00");
        assert_eq!(utc_text(951_782_400), "2000-02-29 00:00:00"); // divisible by 400: leap
        assert_eq!(utc_text(4_107_542_400), "2100-03-01 00:00:00"); // divisible by 100: not
        assert_eq!(utc_text(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn the_table_marks_the_current_generation() {
        let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let g = |id, result: &str, detail: &str| pb::Generation {
            id,
            time_unix: 1_700_000_000,
            digest: digest.clone(),
            result: result.into(),
            detail: detail.into(),
            plan: vec![],
        };
        let reply = pb::HistoryReply {
            generations: vec![g(0, "built", ""), g(1, "rolled-back", "web: exited 1"), g(2, "active", "")],
            current: 2,
        };
        assert_eq!(
            table(&reply),
            [
                "  GEN  TIME (UTC)          DIGEST       RESULT      DETAIL",
                "  0    2023-11-14 22:13:20 0123456789ab built",
                "  1    2023-11-14 22:13:20 0123456789ab rolled-back web: exited 1",
                "* 2    2023-11-14 22:13:20 0123456789ab active",
            ]
        );
        let v = json(&reply);
        assert_eq!(v["current"], 2);
        assert_eq!(v["generations"][1]["detail"], "web: exited 1");
        assert_eq!(v["generations"][1]["plan"], serde_json::json!([]));
        assert_eq!(short_digest("abc"), "abc");
    }
}
