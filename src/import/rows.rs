//! Reading an import file one row at a time: CSV with a header line, or JSON lines. Pure over any
//! [`Read`]: a file of a million rows never sits in memory, and a row that cannot be read is
//! reported with its line and the reader goes on to the next.

use crate::intake::{CreateInvitationRequest, Problem, Reason};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};

/// A JSON line or a CSV row longer than this is refused (a JSON line is skipped without being
/// held in memory; a CSV row is bounded by the upload's limit while it is read).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The columns a CSV header must have; every column other than the known ones is a variable of
/// the flow (`first_name`, or `variables.first_name`).
const REQUIRED_COLUMNS: [&str; 3] = ["event_id", "flow", "phone"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::JsonLines => "jsonl",
        }
    }

    /// `csv`, `jsonl` (or `ndjson`).
    pub fn parse(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::JsonLines),
            _ => None,
        }
    }
}

/// One row: its line in the file and the event it holds, or why it cannot be read.
#[derive(Debug, Clone)]
pub struct Row {
    pub line: u64,
    pub event: Result<CreateInvitationRequest, Problem>,
}

/// A file that cannot be read as an import at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error("the CSV header has no '{0}' column")]
    MissingColumn(&'static str),
    #[error("the CSV header names '{0}' twice")]
    DuplicateColumn(String),
    #[error("cannot read the file: {0}")]
    Io(String),
}

/// The rows of `reader` in `format`, in order.
pub fn rows<'r>(
    format: Format,
    reader: impl Read + Send + 'r,
) -> Result<Box<dyn Iterator<Item = Result<Row, FileError>> + Send + 'r>, FileError> {
    Ok(match format {
        Format::Csv => Box::new(CsvRows::new(reader)?),
        Format::JsonLines => Box::new(JsonLines {
            reader: BufReader::new(reader),
            line: 0,
            buffer: Vec::new(),
        }),
    })
}

fn unreadable(message: impl Into<String>) -> Problem {
    Problem {
        field: String::new(),
        reason: Reason::Unreadable,
        message: message.into(),
    }
}

/// What a CSV column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    EventId,
    Flow,
    Phone,
    Locale,
    Unit,
    Channel,
    EventTime,
    Variable(String),
}

struct CsvRows<R: Read> {
    reader: csv::Reader<R>,
    columns: Vec<Column>,
    record: csv::StringRecord,
}

impl<R: Read> CsvRows<R> {
    fn new(reader: R) -> Result<Self, FileError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let headers = reader
            .headers()
            .map_err(|e| FileError::Io(e.to_string()))?
            .clone();
        let mut columns = Vec::with_capacity(headers.len());
        for name in &headers {
            let name = name.trim_start_matches('\u{feff}');
            let column = match name {
                "event_id" => Column::EventId,
                "flow" => Column::Flow,
                "phone" => Column::Phone,
                "locale" => Column::Locale,
                "unit" => Column::Unit,
                "channel" => Column::Channel,
                "event_time" => Column::EventTime,
                other => Column::Variable(
                    other
                        .strip_prefix("variables.")
                        .unwrap_or(other)
                        .to_string(),
                ),
            };
            if columns.contains(&column) {
                return Err(FileError::DuplicateColumn(name.to_string()));
            }
            columns.push(column);
        }
        for required in REQUIRED_COLUMNS {
            let column = match required {
                "event_id" => Column::EventId,
                "flow" => Column::Flow,
                _ => Column::Phone,
            };
            if !columns.contains(&column) {
                return Err(FileError::MissingColumn(required));
            }
        }
        Ok(CsvRows {
            reader,
            columns,
            record: csv::StringRecord::new(),
        })
    }

    fn event(&self) -> Result<CreateInvitationRequest, Problem> {
        if self.record.as_slice().len() > MAX_LINE_BYTES {
            return Err(unreadable(format!(
                "the row is longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        if self.record.len() != self.columns.len() {
            return Err(unreadable(format!(
                "{} cells where the header has {}",
                self.record.len(),
                self.columns.len()
            )));
        }
        let mut event = CreateInvitationRequest::default();
        let optional = |cell: &str| (!cell.is_empty()).then(|| cell.to_string());
        for (column, cell) in self.columns.iter().zip(self.record.iter()) {
            match column {
                Column::EventId => event.event_id = cell.to_string(),
                Column::Flow => event.flow = cell.to_string(),
                Column::Phone => event.phone = cell.to_string(),
                Column::Locale => event.locale = optional(cell),
                Column::Unit => event.unit = optional(cell),
                Column::Channel => event.channel = optional(cell),
                Column::EventTime if cell.is_empty() => {}
                Column::EventTime => {
                    event.event_time = Some(
                        DateTime::parse_from_rfc3339(cell)
                            .map_err(|_| Problem {
                                field: "event_time".into(),
                                reason: Reason::InvalidEventTime,
                                message: format!(
                                    "'{}' is not a date and time such as 2026-11-28T21:30:00+01:00",
                                    crate::intake::shown(cell)
                                ),
                            })?
                            .with_timezone(&Utc),
                    )
                }
                // An empty cell gives no value: the flow's check names it if it needs one.
                Column::Variable(_) if cell.is_empty() => {}
                Column::Variable(name) => {
                    event
                        .variables
                        .insert(name.clone(), Value::String(cell.to_string()));
                }
            }
        }
        Ok(event)
    }
}

impl<R: Read> Iterator for CsvRows<R> {
    type Item = Result<Row, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line());
                Some(Ok(Row {
                    line,
                    event: self.event(),
                }))
            }
            // A row that is not UTF-8 is refused and the next one read.
            Err(e) if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) => {
                let line = e.position().map_or(0, |p| p.line());
                Some(Ok(Row {
                    line,
                    event: Err(unreadable("the row is not UTF-8 text")),
                }))
            }
            Err(e) => Some(Err(FileError::Io(e.to_string()))),
        }
    }
}

struct JsonLines<R: Read> {
    reader: BufReader<R>,
    line: u64,
    buffer: Vec<u8>,
}

impl<R: Read> JsonLines<R> {
    /// Reads the next line into the buffer, at most [`MAX_LINE_BYTES`] of it; returns false at
    /// the end of the file and whether the line was cut.
    fn read_line(&mut self) -> std::io::Result<Option<bool>> {
        self.buffer.clear();
        let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX) + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buffer)?;
        if read == 0 {
            return Ok(None);
        }
        if self.buffer.len() > MAX_LINE_BYTES && self.buffer.last() != Some(&b'\n') {
            // Skip the rest of the line without keeping it.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = (&mut self.reader)
                    .take(limit)
                    .read_until(b'\n', &mut rest)?;
                if n == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            return Ok(Some(true));
        }
        Ok(Some(false))
    }
}

impl<R: Read> Iterator for JsonLines<R> {
    type Item = Result<Row, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let cut = match self.read_line() {
                Ok(None) => return None,
                Ok(Some(cut)) => cut,
                Err(e) => return Some(Err(FileError::Io(e.to_string()))),
            };
            self.line += 1;
            let line = self.line;
            if cut {
                return Some(Ok(Row {
                    line,
                    event: Err(unreadable(format!(
                        "the line is longer than {MAX_LINE_BYTES} bytes"
                    ))),
                }));
            }
            let text = self.buffer.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let event = serde_json::from_slice::<CreateInvitationRequest>(text).map_err(|e| {
                unreadable(format!("not an event: {}", without_value(&e.to_string())))
            });
            return Some(Ok(Row { line, event }));
        }
    }
}

/// serde's message without the value it quotes (`invalid type: integer `33612345678``: a phone
/// number written as a number), since an import's report is kept after the customer is erased.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some(start) = message.find(prefix) else {
            continue;
        };
        let after = &message[start + prefix.len()..];
        if let Some(expected) = after.find(", expected") {
            let kind = after[..expected]
                .split_whitespace()
                .next()
                .unwrap_or_default();
            return format!("{}{prefix}{kind}{}", &message[..start], &after[expected..]);
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_s_error_does_not_quote_the_value_it_refuses() {
        let cases = [
            (
                r#"{"phone": 33612345678}"#,
                "invalid type: integer, expected a string",
            ),
            (
                r#"{"phone": "+33612345678", "locale": 7}"#,
                "invalid type: integer, expected",
            ),
            (
                r#"{"event_id": ["+33612345678"]}"#,
                "invalid type: sequence, expected a string",
            ),
        ];
        for (line, kept) in cases {
            let error = serde_json::from_str::<CreateInvitationRequest>(line).unwrap_err();
            let shown = without_value(&error.to_string());
            assert!(!shown.contains("33612345678"), "{shown}");
            assert!(shown.contains(kept), "{shown}");
        }
        assert_eq!(
            without_value("missing field `phone` at line 1 column 2"),
            "missing field `phone` at line 1 column 2"
        );
    }

    fn read(format: Format, text: &str) -> Vec<(u64, Result<CreateInvitationRequest, Reason>)> {
        rows(format, text.as_bytes())
            .unwrap()
            .map(|row| {
                let row = row.unwrap();
                (row.line, row.event.map_err(|p| p.reason))
            })
            .collect()
    }

    #[test]
    fn a_csv_row_is_an_event_whose_other_columns_are_variables() {
        let rows = read(
            Format::Csv,
            "event_id,flow,phone,unit,event_time,first_name,variables.store\n\
             order-1,delivery,+33612345678,lyon-2,2026-11-28T21:30:00+01:00,Ana,Lyon 2\n\
             order-2, delivery ,+33612345679,,,,\n",
        );
        assert_eq!(rows.len(), 2);
        let (line, first) = &rows[0];
        let first = first.as_ref().unwrap();
        assert_eq!(*line, 2);
        assert_eq!(first.event_id, "order-1");
        assert_eq!(first.unit.as_deref(), Some("lyon-2"));
        assert_eq!(
            first.event_time.unwrap().to_rfc3339(),
            "2026-11-28T20:30:00+00:00"
        );
        assert_eq!(first.variables["first_name"], "Ana");
        assert_eq!(first.variables["store"], "Lyon 2");
        // Cells are trimmed; empty optional cells are absent.
        let second = rows[1].1.as_ref().unwrap();
        assert_eq!(second.flow, "delivery");
        assert_eq!(second.unit, None);
        assert!(second.variables.is_empty());
    }

    #[test]
    fn a_bad_csv_row_is_refused_with_its_line_and_the_next_is_read() {
        let rows = read(
            Format::Csv,
            "event_id,flow,phone\n\
             a,delivery,+33612345678\n\
             b,delivery\n\
             c,delivery,+33612345678,extra\n\
             \"d\nstill d\",delivery,+33612345678\n\
             e,delivery,+33612345678\n",
        );
        let lines: Vec<u64> = rows.iter().map(|(line, _)| *line).collect();
        // A quoted cell spanning two lines keeps the line of the row's start.
        assert_eq!(lines, vec![2, 3, 4, 5, 7]);
        assert!(rows[0].1.is_ok());
        assert_eq!(rows[1].1.as_ref().unwrap_err(), &Reason::Unreadable);
        assert_eq!(rows[2].1.as_ref().unwrap_err(), &Reason::Unreadable);
        assert_eq!(rows[3].1.as_ref().unwrap().event_id, "d\nstill d");
        assert!(rows[4].1.is_ok());
    }

    #[test]
    fn a_csv_row_longer_than_the_limit_is_refused_alone() {
        let text = format!(
            "event_id,flow,phone\na,delivery,{}\nb,delivery,+33612345678\n",
            "9".repeat(MAX_LINE_BYTES + 1)
        );
        let rows = read(Format::Csv, &text);
        assert_eq!(rows[0].1.as_ref().unwrap_err(), &Reason::Unreadable);
        assert_eq!(rows[1].1.as_ref().unwrap().event_id, "b");
    }

    #[test]
    fn a_bad_event_time_is_named() {
        let rows = read(
            Format::Csv,
            "event_id,flow,phone,event_time\na,delivery,+33612345678,yesterday\n",
        );
        assert_eq!(rows[0].1.as_ref().unwrap_err(), &Reason::InvalidEventTime);
    }

    #[test]
    fn a_csv_without_a_needed_column_is_refused_whole() {
        for (header, error) in [
            ("event_id,flow\n", FileError::MissingColumn("phone")),
            ("flow,phone\n", FileError::MissingColumn("event_id")),
            (
                "event_id,flow,phone,phone\n",
                FileError::DuplicateColumn("phone".into()),
            ),
        ] {
            assert_eq!(
                rows(Format::Csv, header.as_bytes()).err(),
                Some(error),
                "{header}"
            );
        }
        // A byte-order mark before the header is not part of the first name.
        assert_eq!(
            read(Format::Csv, "\u{feff}event_id,flow,phone\na,b,c\n").len(),
            1
        );
    }

    #[test]
    fn json_lines_are_events_and_a_bad_line_is_refused_alone() {
        let long = format!("{{\"event_id\":\"{}\"}}", "x".repeat(MAX_LINE_BYTES + 10));
        let text = format!(
            "{{\"event_id\":\"a\",\"flow\":\"delivery\",\"phone\":\"+33612345678\",\"variables\":{{\"first_name\":\"Ana\"}}}}\n\
             \n\
             not json\n\
             {long}\n\
             {{\"event_id\":\"b\",\"flow\":\"delivery\",\"phone\":\"+33612345678\",\"colour\":\"red\"}}\n\
             {{\"event_id\":\"c\",\"flow\":\"delivery\",\"phone\":\"+33612345678\"}}"
        );
        let rows = read(Format::JsonLines, &text);
        let lines: Vec<u64> = rows.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![1, 3, 4, 5, 6]);
        assert_eq!(rows[0].1.as_ref().unwrap().variables["first_name"], "Ana");
        for bad in &rows[1..4] {
            assert_eq!(bad.1.as_ref().unwrap_err(), &Reason::Unreadable);
        }
        // The last line needs no newline.
        assert_eq!(rows[4].1.as_ref().unwrap().event_id, "c");
    }
}
