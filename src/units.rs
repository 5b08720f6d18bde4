//! The organisation tree: company → region → store, any depth. Users, API keys and reports are
//! scoped to a unit and its sub-units.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A unit's code, chosen by the company ("LYON-2", "north.region"): 1 to 64 of letters, digits,
/// `-`, `_` and `.`. It appears in URLs and CSV files, hence the narrow alphabet.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "LYON-2")]
pub struct UnitCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid unit code '{0}': use 1 to 64 of letters, digits, '-', '_' and '.'")]
pub struct InvalidUnitCode(pub String);

impl UnitCode {
    pub fn parse(raw: &str) -> Result<Self, InvalidUnitCode> {
        let valid = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if valid {
            Ok(Self(raw.to_string()))
        } else {
            Err(InvalidUnitCode(raw.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UnitCode {
    type Error = InvalidUnitCode;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        UnitCode::parse(&raw)
    }
}

impl From<UnitCode> for String {
    fn from(code: UnitCode) -> String {
        code.0
    }
}

impl fmt::Display for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnitCode({})", self.0)
    }
}

/// One row of a units file (`code,name,parent`), with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRow {
    pub line: u64,
    pub code: String,
    pub name: String,
    /// Empty for a root.
    pub parent: String,
}

/// A unit as the tree already holds it: its name and its parent's code.
pub type ExistingUnits = std::collections::HashMap<String, (String, Option<String>)>;

/// What a units file changes: the units to create, parents before children, and how many rows
/// name a unit that already exists as the row says (a file imported twice changes nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPlan {
    pub create: Vec<crate::storage::NewUnit>,
    pub unchanged: usize,
}

/// Plans a units file against the tree, all or nothing: every row's problem is reported with
/// its line (a bad code, an empty name, a code twice, a unit that exists with another name or
/// parent, a parent found nowhere, a cycle). Rows may come in any order.
pub fn plan_units(rows: &[UnitRow], existing: &ExistingUnits) -> Result<UnitPlan, Vec<String>> {
    let mut problems = Vec::new();
    let mut pending: Vec<(u64, crate::storage::NewUnit)> = Vec::new();
    let mut unchanged = 0;
    let mut seen = std::collections::HashSet::new();
    for row in rows {
        let problem = |message: String| format!("line {}: {message}", row.line);
        let code = match UnitCode::parse(row.code.trim()) {
            Ok(code) => code,
            Err(e) => {
                problems.push(problem(e.to_string()));
                continue;
            }
        };
        let parent = match row.parent.trim() {
            "" => None,
            raw => match UnitCode::parse(raw) {
                Ok(parent) => Some(parent),
                Err(e) => {
                    problems.push(problem(format!("parent: {e}")));
                    continue;
                }
            },
        };
        let name = row.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 {
            problems.push(problem("the name must be 1 to 200 characters".into()));
            continue;
        }
        if !seen.insert(code.clone()) {
            problems.push(problem(format!("the unit '{code}' is listed twice")));
            continue;
        }
        match existing.get(code.as_str()) {
            Some((stored_name, stored_parent))
                if *stored_name == name
                    && stored_parent.as_deref() == parent.as_ref().map(UnitCode::as_str) =>
            {
                unchanged += 1
            }
            Some(_) => problems.push(problem(format!(
                "the unit '{code}' exists with another name or parent; change it through the API"
            ))),
            None => pending.push((row.line, crate::storage::NewUnit { code, name, parent })),
        }
    }
    // Parents first: a unit is placed once its parent exists or is placed.
    let mut placed: std::collections::HashSet<String> = existing.keys().cloned().collect();
    let mut create = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|(_, unit)| {
            let ready = unit
                .parent
                .as_ref()
                .is_none_or(|parent| placed.contains(parent.as_str()));
            if ready {
                placed.insert(unit.code.to_string());
                create.push(unit.clone());
            }
            !ready
        });
        if pending.len() == before {
            let parents: std::collections::HashMap<&str, Option<&str>> = pending
                .iter()
                .map(|(_, u)| (u.code.as_str(), u.parent.as_ref().map(UnitCode::as_str)))
                .collect();
            for (line, unit) in &pending {
                let parent = unit.parent.as_ref().map_or("", UnitCode::as_str);
                // Up the chain of waiting parents: back to this unit is a cycle; out of the file
                // is an ancestor found nowhere (or whose row was refused).
                let mut at = parent;
                let mut steps = 0;
                let cycle = loop {
                    if at == unit.code.as_str() {
                        break true;
                    }
                    match parents.get(at) {
                        Some(Some(next)) if steps <= parents.len() => {
                            at = next;
                            steps += 1;
                        }
                        _ => break false,
                    }
                };
                problems.push(if cycle {
                    format!("line {line}: the unit '{}' is its own ancestor", unit.code)
                } else if parents.contains_key(parent) {
                    format!(
                        "line {line}: the parent '{parent}' cannot be placed: an ancestor of it is neither in the file nor in the tree"
                    )
                } else {
                    format!(
                        "line {line}: the parent '{parent}' is neither in the file nor in the tree (or its row was refused)"
                    )
                });
            }
            break;
        }
    }
    if problems.is_empty() {
        Ok(UnitPlan { create, unchanged })
    } else {
        problems.sort_by_key(|p| {
            p.trim_start_matches("line ")
                .split(':')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        });
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(line: u64, code: &str, name: &str, parent: &str) -> UnitRow {
        UnitRow {
            line,
            code: code.into(),
            name: name.into(),
            parent: parent.into(),
        }
    }

    #[test]
    fn a_units_file_in_any_order_creates_parents_before_children() {
        let rows = [
            row(2, "LYON-2", "Lyon 2", "RHONE"),
            row(3, "RHONE", "Rhône", "ACME"),
            row(4, "ACME", "Acme", ""),
            row(5, "PARIS-1", "Paris 1", "IDF"),
        ];
        let existing: ExistingUnits = [("IDF".to_string(), ("Île-de-France".to_string(), None))]
            .into_iter()
            .collect();
        let plan = plan_units(&rows, &existing).unwrap();
        let order: Vec<&str> = plan.create.iter().map(|u| u.code.as_str()).collect();
        assert_eq!(order, ["ACME", "PARIS-1", "RHONE", "LYON-2"]);
        assert_eq!(plan.unchanged, 0);
    }

    #[test]
    fn the_same_file_twice_changes_nothing() {
        let rows = [row(2, "ACME", "Acme", ""), row(3, "LYON", "Lyon", "ACME")];
        let existing: ExistingUnits = [
            ("ACME".to_string(), ("Acme".to_string(), None)),
            (
                "LYON".to_string(),
                ("Lyon".to_string(), Some("ACME".to_string())),
            ),
        ]
        .into_iter()
        .collect();
        let plan = plan_units(&rows, &existing).unwrap();
        assert!(plan.create.is_empty());
        assert_eq!(plan.unchanged, 2);
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line_and_nothing_is_created() {
        let rows = [
            row(2, "Lyon 2", "Lyon", ""),
            row(3, "A", "", ""),
            row(4, "B", "B", "C"),
            row(5, "C", "C", "B"),
            row(6, "D", "D", "NOWHERE"),
            row(10, "F", "F", "D"),
            row(7, "E", "E", ""),
            row(8, "E", "E again", ""),
            row(9, "IDF", "Paris", ""),
        ];
        let existing: ExistingUnits = [("IDF".to_string(), ("Île-de-France".to_string(), None))]
            .into_iter()
            .collect();
        let problems = plan_units(&rows, &existing).unwrap_err();
        let lines: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                "line 2", "line 3", "line 4", "line 5", "line 6", "line 8", "line 9", "line 10"
            ],
            "{problems:#?}"
        );
        assert!(problems[2].contains("its own ancestor"), "{problems:?}");
        assert!(problems[4].contains("neither in the file"), "{problems:?}");
        assert!(problems[7].contains("an ancestor of it"), "{problems:?}");
    }

    #[test]
    fn unit_codes_accept_the_documented_alphabet_only() {
        for good in ["LYON-2", "north.region", "a", "store_0042", &"x".repeat(64)] {
            assert!(UnitCode::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Lyon 2", "Lyon/2", "é", &"x".repeat(65), "a\n"] {
            assert!(UnitCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn a_parsed_code_prints_back_unchanged(raw in "[A-Za-z0-9._-]{1,64}") {
            let code = UnitCode::parse(&raw).unwrap();
            prop_assert_eq!(code.as_str(), raw.as_str());
        }
    }
}
