//! Execution windows: when (in UTC) a function may act, e.g. `Mon-Fri 08:00-18:00`.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    days: [bool; 7],
    /// Minutes after midnight; `start > end` means the span runs past midnight.
    start: u32,
    end: u32,
}

/// One or more spans separated by `;`. Each span is `DAYS HH:MM-HH:MM`, where DAYS is `*`, a
/// day (`Mon`), a range (`Mon-Fri`) or a comma list (`Mon,Wed,Fri`). The time part may be
/// omitted (whole day). A span whose end is before its start runs past midnight and belongs
/// to the day it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionWindow {
    spans: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid execution window {0:?}")]
pub struct WindowError(String);

impl ExecutionWindow {
    pub fn parse(s: &str) -> Result<Self, WindowError> {
        let err = || WindowError(s.to_string());
        let mut spans = Vec::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let mut words = part.split_whitespace();
            let days = parse_days(words.next().ok_or_else(err)?).ok_or_else(err)?;
            let (start, end) = match words.next() {
                None => (0, 24 * 60),
                Some(t) => {
                    let (a, b) = t.split_once('-').ok_or_else(err)?;
                    (
                        parse_hhmm(a).ok_or_else(err)?,
                        parse_hhmm(b).ok_or_else(err)?,
                    )
                }
            };
            if words.next().is_some() || start == end {
                return Err(err());
            }
            spans.push(Span { days, start, end });
        }
        if spans.is_empty() {
            return Err(err());
        }
        Ok(Self { spans })
    }

    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let minute = now.hour() * 60 + now.minute();
        let today = now.weekday().num_days_from_monday() as usize;
        let yesterday = (now - Duration::days(1)).weekday().num_days_from_monday() as usize;
        self.spans.iter().any(|s| {
            if s.start < s.end {
                s.days[today] && minute >= s.start && minute < s.end
            } else {
                (s.days[today] && minute >= s.start) || (s.days[yesterday] && minute < s.end)
            }
        })
    }
}

fn parse_days(s: &str) -> Option<[bool; 7]> {
    let mut days = [false; 7];
    if s == "*" {
        return Some([true; 7]);
    }
    for item in s.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a)?, day_index(b)?);
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day_index(item)?] = true,
        }
    }
    Some(days)
}

fn day_index(s: &str) -> Option<usize> {
    s.trim()
        .parse::<Weekday>()
        .ok()
        .map(|d| d.num_days_from_monday() as usize)
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':').unwrap_or((s, "0"));
    let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn table() {
        // 2026-11-23 is a Monday.
        let cases = [
            ("Mon-Fri 08:00-18:00", "2026-11-23T08:00:00Z", true),
            ("Mon-Fri 08:00-18:00", "2026-11-23T18:00:00Z", false),
            ("Mon-Fri 08:00-18:00", "2026-11-22T12:00:00Z", false),
            ("Sat,Sun", "2026-11-22T23:59:00Z", true),
            ("* 22:00-06:00", "2026-11-23T03:00:00Z", true),
            ("Fri 22:00-06:00", "2026-11-28T05:00:00Z", true),
            ("Fri 22:00-06:00", "2026-11-27T05:00:00Z", false),
            ("Sat-Mon", "2026-11-23T10:00:00Z", true),
            (
                "Mon 09:00-10:00; Wed 09:00-10:00",
                "2026-11-25T09:30:00Z",
                true,
            ),
        ];
        for (w, t, want) in cases {
            assert_eq!(
                ExecutionWindow::parse(w).unwrap().contains(at(t)),
                want,
                "{w} at {t}"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        for w in [
            "",
            "Funday",
            "Mon 25:00-26:00",
            "Mon 08:00",
            "Mon 08:00-08:00",
            "Mon 08:00-09:00 extra",
        ] {
            assert!(ExecutionWindow::parse(w).is_err(), "{w}");
        }
    }
}
