//! Keeps the newest tagged image of each repository (by `CreatedAt`; ties go to the tag that
//! sorts last), in the order the repositories first appear. Untagged rows are ignored.

use std::collections::HashMap;

use imgkit_plugin_sdk::{NONE, Record, run_all};

fn newest(records: Vec<Record>) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut best: HashMap<String, (i64, String)> = HashMap::new();
    for r in records {
        if r.repository == NONE || r.tag == NONE {
            continue;
        }
        let key = (r.created_unix().unwrap_or(i64::MIN), r.tag);
        match best.get_mut(&r.repository) {
            Some(current) => {
                if key > *current {
                    *current = key;
                }
            }
            None => {
                order.push(r.repository.clone());
                best.insert(r.repository, key);
            }
        }
    }
    order
        .into_iter()
        .map(|repo| format!("{repo}:{}", best[&repo].1))
        .collect()
}

fn main() -> std::process::ExitCode {
    run_all(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(repo: &str, tag: &str, created: &str) -> Record {
        Record {
            repository: repo.into(),
            tag: tag.into(),
            created_at: created.into(),
            ..Record::default()
        }
    }

    #[test]
    fn keeps_newest_per_repository() {
        let out = newest(vec![
            rec("app", "1.0", "2026-01-01 00:00:00 +0000 UTC"),
            rec("db", "15", "2025-06-01 00:00:00 +0000 UTC"),
            rec("app", "1.1", "2026-02-01 00:00:00 +0000 UTC"),
            rec("app", "<none>", "2026-03-01 00:00:00 +0000 UTC"),
            rec("app", "0.9", "2025-12-01 00:00:00 +0000 UTC"),
        ]);
        assert_eq!(out, ["app:1.1", "db:15"]);
    }
}
