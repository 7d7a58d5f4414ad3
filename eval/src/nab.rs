//! Reads a labelled corpus laid out like the Numenta Anomaly Benchmark (NAB):
//!
//! ```text
//! DIR/data/<category>/<series>.csv        timestamp,value (header row, UTC)
//! DIR/labels/combined_windows.json        {"<category>/<series>.csv": [[start, end], ...]}
//! DIR/config/profiles.json                optional; NAB's cost matrices per profile
//! ```
//!
//! Categories and series are discovered from the folder, so any corpus in this layout can be
//! scored (`--nab DIR`). A series that the labels file does not list is unlabelled: it is
//! skipped with a warning, never scored as "no anomalies".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Something in the corpus that cannot be read; names the file (and line).
#[derive(Debug, thiserror::Error)]
pub enum NabError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Row {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
}

/// One labelled series.
#[derive(Debug, Clone)]
pub struct Series {
    pub category: String,
    /// File stem, e.g. `nyc_taxi`.
    pub name: String,
    /// Unix seconds, ascending.
    pub times: Vec<i64>,
    pub values: Vec<f64>,
    /// Anomaly windows as inclusive row-index ranges, ascending.
    pub windows: Vec<(usize, usize)>,
}

impl Series {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The window holding row `i`, if any.
    pub fn window_at(&self, i: usize) -> Option<usize> {
        self.windows.iter().position(|&(a, b)| i >= a && i <= b)
    }
}

/// NAB's weights for one scoring profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostMatrix {
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// NAB's published profiles (used when the corpus has no `config/profiles.json`).
pub const STANDARD: CostMatrix = CostMatrix {
    tp: 1.0,
    fp: 0.11,
    fn_: 1.0,
};
pub const LOW_FP: CostMatrix = CostMatrix {
    tp: 1.0,
    fp: 0.22,
    fn_: 1.0,
};

/// A corpus: every labelled series, and what was skipped and why.
#[derive(Debug, Default)]
pub struct Corpus {
    pub series: Vec<Series>,
    pub warnings: Vec<String>,
    pub standard: Option<CostMatrix>,
    pub low_fp: Option<CostMatrix>,
}

impl Corpus {
    pub fn categories(&self) -> Vec<String> {
        let mut c: Vec<String> = self.series.iter().map(|s| s.category.clone()).collect();
        c.dedup();
        c
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NabError + '_ {
    move |source| NabError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads every `data/<category>/*.csv` that the labels file lists.
pub fn load(dir: &Path) -> Result<Corpus, NabError> {
    let labels_path = dir.join("labels").join("combined_windows.json");
    let labels_text = std::fs::read_to_string(&labels_path).map_err(io(&labels_path))?;
    let labels = parse_windows(&labels_text).map_err(|msg| NabError::File {
        path: labels_path.clone(),
        msg,
    })?;
    let mut corpus = Corpus {
        standard: Some(STANDARD),
        low_fp: Some(LOW_FP),
        ..Corpus::default()
    };
    let profiles_path = dir.join("config").join("profiles.json");
    if profiles_path.exists() {
        let text = std::fs::read_to_string(&profiles_path).map_err(io(&profiles_path))?;
        let (standard, low_fp) = parse_profiles(&text).map_err(|msg| NabError::File {
            path: profiles_path.clone(),
            msg,
        })?;
        corpus.standard = standard;
        corpus.low_fp = low_fp;
    }
    let data = dir.join("data");
    for key in labels.keys() {
        if !data.join(key).exists() {
            corpus
                .warnings
                .push(format!("{key}: in the labels but no data file: ignored"));
        }
    }
    let mut categories: Vec<PathBuf> = std::fs::read_dir(&data)
        .map_err(io(&data))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    categories.sort();
    for cat_dir in categories {
        let category = file_name(&cat_dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&cat_dir)
            .map_err(io(&cat_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        files.sort();
        for path in files {
            let key = format!("{category}/{}", file_name(&path));
            let Some(limits) = labels.get(&key) else {
                corpus.warnings.push(format!(
                    "{key}: not in labels/combined_windows.json (unlabelled): skipped"
                ));
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let (times, values, resorted) =
                parse_csv(&text).map_err(|(line, msg)| NabError::Row {
                    path: path.clone(),
                    line,
                    msg,
                })?;
            if resorted {
                corpus
                    .warnings
                    .push(format!("{key}: rows were not in time order: sorted"));
            }
            let mut windows = Vec::new();
            for &(start, end) in limits {
                let a = times.partition_point(|t| *t < start);
                let b = times.partition_point(|t| *t <= end);
                if b == 0 || a >= b {
                    corpus.warnings.push(format!(
                        "{key}: window {} .. {} holds no datapoint: ignored",
                        iso(start),
                        iso(end)
                    ));
                    continue;
                }
                windows.push((a, b - 1));
            }
            windows.sort_unstable();
            if times.is_empty() {
                corpus
                    .warnings
                    .push(format!("{key}: no datapoints: skipped"));
                continue;
            }
            corpus.series.push(Series {
                category: category.clone(),
                name: path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                times,
                values,
                windows,
            });
        }
    }
    Ok(corpus)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

type Windows = BTreeMap<String, Vec<(i64, i64)>>;

fn parse_windows(text: &str) -> Result<Windows, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("expected an object of \"<category>/<series>.csv\": [[start, end], ...]")?;
    let mut out = BTreeMap::new();
    for (key, list) in obj {
        let list = list
            .as_array()
            .ok_or_else(|| format!("{key}: expected a list of [start, end] pairs"))?;
        let mut windows = Vec::new();
        for (k, pair) in list.iter().enumerate() {
            let pair = pair
                .as_array()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| format!("{key}: window {k}: expected [start, end]"))?;
            let ts = |j: usize| {
                pair.get(j)
                    .and_then(|x| x.as_str())
                    .and_then(parse_time)
                    .ok_or_else(|| format!("{key}: window {k}: bad timestamp {:?}", pair.get(j)))
            };
            let (a, b) = (ts(0)?, ts(1)?);
            if b < a {
                return Err(format!("{key}: window {k}: ends before it starts"));
            }
            windows.push((a, b));
        }
        out.insert(key.clone(), windows);
    }
    Ok(out)
}

type Profiles = (Option<CostMatrix>, Option<CostMatrix>);

fn parse_profiles(text: &str) -> Result<Profiles, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let get = |name: &str| -> Result<Option<CostMatrix>, String> {
        let Some(p) = v.get(name) else {
            return Ok(None);
        };
        let w = |k: &str| {
            p.get("CostMatrix")
                .and_then(|c| c.get(k))
                .and_then(|x| x.as_f64())
                .ok_or_else(|| format!("{name}: CostMatrix.{k} missing or not a number"))
        };
        Ok(Some(CostMatrix {
            tp: w("tpWeight")?,
            fp: w("fpWeight")?,
            fn_: w("fnWeight")?,
        }))
    };
    Ok((get("standard")?, get("reward_low_FP_rate")?))
}

/// Times, values, and whether the rows had to be sorted.
type Rows = (Vec<i64>, Vec<f64>, bool);

/// The rows of a `timestamp,value` file; errors carry the 1-based line number.
fn parse_csv(text: &str) -> Result<Rows, (usize, String)> {
    let mut rows: Vec<(i64, f64)> = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let line_no = k + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut cols = line.split(',');
        let (Some(t), Some(v)) = (cols.next(), cols.next()) else {
            return Err((line_no, format!("expected timestamp,value, got {line:?}")));
        };
        let t = t.trim().trim_matches('"');
        let v = v.trim().trim_matches('"');
        let parsed = parse_time(t);
        if k == 0 && parsed.is_none() {
            continue; // a header row, whatever its names
        }
        let at = parsed.ok_or_else(|| (line_no, format!("bad timestamp {t:?}")))?;
        let value: f64 = v
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite())
            .ok_or_else(|| (line_no, format!("bad value {v:?}")))?;
        rows.push((at, value));
    }
    let resorted = rows.windows(2).any(|w| w[1].0 < w[0].0);
    if resorted {
        rows.sort_by_key(|r| r.0);
    }
    Ok((
        rows.iter().map(|r| r.0).collect(),
        rows.iter().map(|r| r.1).collect(),
        resorted,
    ))
}

/// `YYYY-MM-DD HH:MM[:SS[.ffffff]]` (or with `T`, optional `Z`), UTC → Unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm) = (t.next()??, t.next()??);
    let ss = t.next().flatten().unwrap_or(0);
    let valid = (1..=12).contains(&m) && (1..=31).contains(&day) && hh < 24 && mm < 60 && ss < 61;
    valid.then(|| days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds → `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn iso(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        for s in [
            "1970-01-01 00:00:00",
            "2014-04-10 07:15:00",
            "2000-02-29 23:59:59",
        ] {
            let t = parse_time(s).unwrap();
            assert_eq!(iso(t), s);
        }
        assert_eq!(
            parse_time("2014-04-10 07:15:00.000000"),
            parse_time("2014-04-10T07:15:00Z")
        );
        assert_eq!(parse_time("1970-01-02 00:00:00"), Some(86_400));
        for bad in [
            "",
            "2014-13-01 00:00:00",
            "yesterday",
            "2014-01-01 25:00:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn csv_errors_name_the_line() {
        let ok = "timestamp,value\n2014-01-01 00:00:00,1.5\n2014-01-01 00:05:00,2\n";
        let (t, v, sorted) = parse_csv(ok).unwrap();
        assert_eq!((t.len(), v, sorted), (2, vec![1.5, 2.0], false));
        assert_eq!(
            parse_csv("timestamp,value\n2014-01-01 00:00:00,abc\n")
                .unwrap_err()
                .0,
            2
        );
        assert_eq!(
            parse_csv("timestamp,value\n2014-01-01 00:00:00\n")
                .unwrap_err()
                .0,
            2
        );
        assert_eq!(parse_csv("timestamp,value\nnope,1\n").unwrap_err().0, 2);
        // Any header names; a file without a header starts with data.
        assert_eq!(
            parse_csv("time,cpu\n2014-01-01 00:00:00,3\n").unwrap().1,
            vec![3.0]
        );
        assert_eq!(parse_csv("2014-01-01 00:00:00,3\n").unwrap().1, vec![3.0]);
        let (_, v, sorted) = parse_csv("2014-01-01 00:05:00,2\n2014-01-01 00:00:00,1\n").unwrap();
        assert_eq!((v, sorted), (vec![1.0, 2.0], true));
    }

    #[test]
    fn labels_and_profiles_parse_or_say_why() {
        let w = parse_windows(r#"{"a/x.csv": [["2014-01-01 00:00:00.000000", "2014-01-01 01:00:00.000000"]], "a/y.csv": []}"#).unwrap();
        assert_eq!(w.get("a/x.csv").map(Vec::len), Some(1));
        assert!(parse_windows("[1]").is_err());
        assert!(
            parse_windows(r#"{"a/x.csv": [["bad", "2014-01-01 00:00:00"]]}"#)
                .unwrap_err()
                .contains("a/x.csv")
        );
        let p = parse_profiles(r#"{"standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}}}"#).unwrap();
        assert_eq!(p, (Some(STANDARD), None));
        assert!(parse_profiles(r#"{"standard": {"CostMatrix": {}}}"#).is_err());
    }

    #[test]
    fn a_folder_in_nab_layout_loads_and_unlabelled_series_are_skipped() {
        let dir = std::env::temp_dir().join(format!("selfheal-eval-nab-{}", std::process::id()));
        let cat = dir.join("data").join("cat");
        std::fs::create_dir_all(&cat).unwrap();
        std::fs::create_dir_all(dir.join("labels")).unwrap();
        let rows: String = (0..10)
            .map(|i| format!("2014-01-01 00:{:02}:00,{i}\n", i * 5))
            .collect();
        std::fs::write(cat.join("s.csv"), format!("timestamp,value\n{rows}")).unwrap();
        std::fs::write(
            cat.join("unlabelled.csv"),
            format!("timestamp,value\n{rows}"),
        )
        .unwrap();
        std::fs::write(
            dir.join("labels").join("combined_windows.json"),
            r#"{"cat/s.csv": [["2014-01-01 00:10:00.000000", "2014-01-01 00:20:00.000000"]]}"#,
        )
        .unwrap();
        let c = load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(c.series.len(), 1);
        assert_eq!(c.series[0].windows, vec![(2, 4)]);
        assert_eq!(c.categories(), vec!["cat".to_string()]);
        assert!(c.warnings.iter().any(|w| w.contains("unlabelled")));
        assert_eq!(c.standard, Some(STANDARD));
    }
}
