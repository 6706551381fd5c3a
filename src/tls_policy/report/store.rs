//! The TLS-RPT store: every session result of a UTC day appended as one JSON line to
//! `<spool>/tls-reports/<YYYY-MM-DD>.jsonl`, read back and counted when the day's reports are
//! made. A policy's text is written once per file (under a short key the session lines
//! name), so a long policy does not repeat on every line.
//!
//! Appending a line is one `write` to the page cache: nothing is lost when the process dies,
//! a running relay and a `tls-report` command can read the same file, and a line cut short by
//! a crash is skipped on reading. `<day>.sent` lists the domains whose report for that day was
//! sent (claimed under a lock, so a report goes once even if two processes try).

use super::{FailureDetail, ReportPolicy, SessionResult};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Days of results kept after their reports went out (for `tls-report --day` and audits).
pub const KEEP_DAYS: i64 = 14;

/// A UTC day, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i64);

impl Day {
    pub fn of(unix: i64) -> Day {
        Day(unix.div_euclid(86_400))
    }

    /// Seconds since the epoch at 00:00:00 of this day.
    pub fn start(self) -> i64 {
        self.0 * 86_400
    }

    /// `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Day> {
        crate::smtp::date::parse_day(s).filter(|&d| d >= 0).map(Day)
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::smtp::date::day_name(self.0))
    }
}

/// A line of a day's file.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Policy {
        key: String,
        policy: ReportPolicy,
    },
    Session {
        /// The report domain.
        d: String,
        /// The policy's key.
        k: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        f: Option<FailureDetail>,
    },
}

/// One policy's counts for one domain and day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCounts {
    pub policy: ReportPolicy,
    pub successes: u64,
    pub failures: BTreeMap<FailureDetail, u64>,
}

impl PolicyCounts {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// A day's results: report domain -> its policies' counts (in a stable order).
pub type DayResults = BTreeMap<String, Vec<PolicyCounts>>;

struct Open {
    day: Day,
    file: File,
    /// Policy keys already written to this day's file by this process.
    written: HashSet<String>,
}

/// The results on disk.
pub struct Store {
    dir: PathBuf,
    open: Mutex<Option<Open>>,
}

impl Store {
    /// The store of the spool at `spool_dir` (its directory is made when missing).
    pub fn open(spool_dir: &Path) -> io::Result<Store> {
        let dir = spool_dir.join("tls-reports");
        std::fs::create_dir_all(&dir)?;
        Ok(Store {
            dir,
            open: Mutex::new(None),
        })
    }

    fn journal(&self, day: Day) -> PathBuf {
        self.dir.join(format!("{day}.jsonl"))
    }

    /// Count one session, on the day `now` falls in.
    pub fn record(&self, result: &SessionResult, now: i64) -> io::Result<()> {
        let day = Day::of(now);
        let key = policy_key(&result.policy);
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|o| o.day != day) {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.journal(day))?;
            *guard = Some(Open {
                day,
                file,
                written: HashSet::new(),
            });
        }
        let Some(open) = guard.as_mut() else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(256);
        if !open.written.contains(&key) {
            let line = Line::Policy {
                key: key.clone(),
                policy: result.policy.clone(),
            };
            serde_json::to_writer(&mut out, &line).map_err(io::Error::other)?;
            out.push(b'\n');
        }
        let line = Line::Session {
            d: result.report_domain.clone(),
            k: key.clone(),
            f: result.failure.clone(),
        };
        serde_json::to_writer(&mut out, &line).map_err(io::Error::other)?;
        out.push(b'\n');
        // One write: lines of concurrent writers (another process) never interleave.
        open.file.write_all(&out)?;
        open.written.insert(key);
        Ok(())
    }

    /// Read and count a day's results. Lines that do not parse (the last one, cut by a crash)
    /// are skipped; a day without a file has no results.
    pub fn read_day(&self, day: Day) -> io::Result<DayResults> {
        let file = match File::open(self.journal(day)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DayResults::new()),
            Err(e) => return Err(e),
        };
        let mut policies: BTreeMap<String, ReportPolicy> = BTreeMap::new();
        // (domain, key) -> (successes, failures)
        type Tally = (u64, BTreeMap<FailureDetail, u64>);
        let mut counts: BTreeMap<(String, String), Tally> = BTreeMap::new();
        for line in BufReader::new(file).split(b'\n') {
            let line = line?;
            match serde_json::from_slice::<Line>(&line) {
                Ok(Line::Policy { key, policy }) => {
                    policies.entry(key).or_insert(policy);
                }
                Ok(Line::Session { d, k, f }) => {
                    let entry = counts.entry((d, k)).or_default();
                    match f {
                        None => entry.0 += 1,
                        Some(f) => *entry.1.entry(f).or_default() += 1,
                    }
                }
                Err(_) => continue,
            }
        }
        let mut out = DayResults::new();
        for ((domain, key), (successes, failures)) in counts {
            let Some(policy) = policies.get(&key) else {
                continue;
            };
            out.entry(domain).or_default().push(PolicyCounts {
                policy: policy.clone(),
                successes,
                failures,
            });
        }
        Ok(out)
    }

    /// Claim the sending of `domain`'s report for `day`: true the first time, false ever
    /// after (in this process or another).
    pub fn claim(&self, day: Day, domain: &str) -> io::Result<bool> {
        let path = self.dir.join(format!("{day}.sent"));
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let _lock = Flock::exclusive(&file)?;
        let mut seen = String::new();
        io::Read::read_to_string(&mut &file, &mut seen)?;
        if seen.lines().any(|l| l == domain) {
            return Ok(false);
        }
        (&file).write_all(format!("{domain}\n").as_bytes())?;
        file.sync_data()?;
        Ok(true)
    }

    /// The days that have results on disk, oldest first.
    pub fn days(&self) -> io::Result<Vec<Day>> {
        let mut days: Vec<Day> = std::fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Day::parse(name.strip_suffix(".jsonl")?)
            })
            .collect();
        days.sort();
        Ok(days)
    }

    /// Remove the files of days before `oldest`.
    pub fn prune(&self, oldest: Day) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let day = name.split_once('.').and_then(|(d, _)| Day::parse(d));
            if day.is_some_and(|d| d < oldest) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A short name for a policy: the first 8 bytes of the SHA-256 of its JSON, in hex.
fn policy_key(policy: &ReportPolicy) -> String {
    let json = serde_json::to_vec(policy).unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An exclusive advisory lock on a file, released when dropped.
struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    fn exclusive(file: &'a File) -> io::Result<Flock<'a>> {
        file.lock()?;
        Ok(Flock(file))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PolicyType, ResultType};
    use super::*;

    fn sts(domain: &str, id: &str) -> ReportPolicy {
        ReportPolicy {
            kind: PolicyType::Sts,
            strings: vec!["version: STSv1".into(), format!("mode: enforce {id}")],
            domain: domain.into(),
            mx_host: vec![format!("mx.{domain}")],
        }
    }

    fn session(domain: &str, policy: ReportPolicy, failure: Option<ResultType>) -> SessionResult {
        SessionResult {
            report_domain: domain.into(),
            policy,
            failure: failure.map(|r| FailureDetail {
                receiving_mx_hostname: Some(format!("mx.{domain}")),
                ..FailureDetail::new(r)
            }),
        }
    }

    #[test]
    fn days() {
        assert_eq!(Day(0).to_string(), "1970-01-01");
        assert_eq!(Day::parse("2026-11-23"), Some(Day::of(1_795_416_600)));
        assert_eq!(
            Day::parse("2024-02-29").map(|d| d.to_string()).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(Day::parse("2026-02-30"), None);
        assert_eq!(Day::parse("2026-13-01"), None);
        assert_eq!(Day::parse("yesterday"), None);
    }

    #[test]
    fn results_are_counted_per_domain_policy_and_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = 1_795_416_600;
        let a1 = sts("a.example", "1");
        let a2 = sts("a.example", "2");
        store
            .record(&session("a.example", a1.clone(), None), now)
            .unwrap();
        store
            .record(&session("a.example", a1.clone(), None), now)
            .unwrap();
        let fail = Some(ResultType::CertificateHostMismatch);
        store
            .record(&session("a.example", a1.clone(), fail), now)
            .unwrap();
        store
            .record(&session("a.example", a2.clone(), fail), now)
            .unwrap();
        store
            .record(
                &session("b.example", ReportPolicy::none("b.example"), None),
                now,
            )
            .unwrap();
        // The next day goes to its own file.
        store
            .record(&session("a.example", a1.clone(), None), now + 86_400)
            .unwrap();
        // A line cut short by a crash is skipped.
        let path = dir
            .path()
            .join("tls-reports")
            .join(format!("{}.jsonl", Day::of(now)));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"d\":\"a.exa").unwrap();

        // A new store (a restart) reads what the old one wrote, and adds to it.
        let store = Store::open(dir.path()).unwrap();
        let day = store.read_day(Day::of(now)).unwrap();
        assert_eq!(day.len(), 2);
        let a = &day["a.example"];
        assert_eq!(a.len(), 2);
        let first = a.iter().find(|p| p.policy == a1).unwrap();
        assert_eq!((first.successes, first.failed()), (2, 1));
        let second = a.iter().find(|p| p.policy == a2).unwrap();
        assert_eq!((second.successes, second.failed()), (0, 1));
        assert_eq!(day["b.example"][0].successes, 1);
        assert_eq!(
            store.read_day(Day::of(now + 86_400)).unwrap()["a.example"][0].successes,
            1
        );
        assert!(store.read_day(Day::of(now - 86_400)).unwrap().is_empty());
        assert_eq!(
            store.days().unwrap(),
            vec![Day::of(now), Day::of(now + 86_400)]
        );

        assert!(store.claim(Day::of(now), "a.example").unwrap());
        assert!(!store.claim(Day::of(now), "a.example").unwrap());
        assert!(store.claim(Day::of(now), "b.example").unwrap());
        assert_eq!(store.prune(Day::of(now + 86_400)).unwrap(), 2);
        assert_eq!(store.days().unwrap(), vec![Day::of(now + 86_400)]);
    }
}
