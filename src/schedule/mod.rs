//! When a survey may be texted: the sending window in the recipient's local time, public
//! holidays, daylight-saving changes, and countries with several time zones. Pure: the caller
//! passes the instant, the zones and the rules.
//!
//! - A window is a set of weekdays and a daily span `[from, to)` in local time; the default is
//!   Monday to Saturday, 08:00 to 20:00. A flow can narrow it, never widen it.
//! - A holiday is never a sending day.
//! - Local times are resolved in the zone on that date: a window edge that falls in a
//!   daylight-saving gap (02:30 on the night clocks go forward) moves to the first instant after
//!   the gap; one that falls in the repeated hour takes its first occurrence.
//! - With several zones (a country spanning zones, no zone known for the contact), an instant is
//!   allowed only when it is inside the window in every zone.

mod holidays;
mod zones;

pub use holidays::{HolidayCalendar, easter_sunday};
pub use zones::zones_of_country;

use crate::flow::{QuotaPeriod, WindowNarrowing};
use chrono::{DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// Where in the week and the day texts may go out, in the recipient's local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendingWindow {
    /// Allowed weekdays, Monday first.
    days: [bool; 7],
    from: NaiveTime,
    to: NaiveTime,
}

impl Default for SendingWindow {
    /// Monday to Saturday, 08:00 to 20:00.
    fn default() -> Self {
        SendingWindow {
            days: [true, true, true, true, true, true, false],
            from: NaiveTime::from_hms_opt(8, 0, 0).expect("a valid time"),
            to: NaiveTime::from_hms_opt(20, 0, 0).expect("a valid time"),
        }
    }
}

impl SendingWindow {
    /// A window of `days` from `from` to `to`; `None` when it allows nothing.
    pub fn new(days: &[Weekday], from: NaiveTime, to: NaiveTime) -> Option<SendingWindow> {
        let mut allowed = [false; 7];
        for day in days {
            allowed[day.num_days_from_monday() as usize] = true;
        }
        (from < to && allowed.iter().any(|d| *d)).then_some(SendingWindow {
            days: allowed,
            from,
            to,
        })
    }

    /// This window narrowed by a flow: fewer days, a later start, an earlier end. `None` when
    /// nothing is left.
    pub fn narrowed(&self, narrowing: &WindowNarrowing) -> Option<SendingWindow> {
        let mut days = self.days;
        if let Some(only) = &narrowing.days {
            for (index, allowed) in days.iter_mut().enumerate() {
                *allowed &= only
                    .iter()
                    .any(|d| d.num_days_from_monday() as usize == index);
            }
        }
        let from = narrowing.from.map_or(self.from, |f| f.max(self.from));
        let to = narrowing.to.map_or(self.to, |t| t.min(self.to));
        (from < to && days.iter().any(|d| *d)).then_some(SendingWindow { days, from, to })
    }

    fn allows_day(&self, date: NaiveDate, holidays: &HolidayCalendar) -> bool {
        self.days[date.weekday().num_days_from_monday() as usize] && !holidays.is_holiday(date)
    }

    /// The window's span on `date` in `zone`, as instants.
    fn span(&self, date: NaiveDate, zone: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        (resolve(zone, date, self.from), resolve(zone, date, self.to))
    }
}

/// The instant of a local date and time: the first occurrence in a repeated hour, the first
/// instant after the gap in a skipped one.
fn resolve(zone: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let local = date.and_time(time);
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Clocks jumped over this time: take the first local minute that exists after it.
            (1..=180)
                .find_map(|minutes| {
                    zone.from_local_datetime(&(local + chrono::Duration::minutes(minutes)))
                        .earliest()
                })
                .map_or_else(
                    || Utc.from_utc_datetime(&local),
                    |at| at.with_timezone(&Utc),
                )
        }
    }
}

/// How far ahead a send time is looked for before giving up (a window and calendar that allow
/// nothing for a year allow nothing).
const HORIZON_DAYS: u64 = 400;

/// Whether `at` is inside the window in `zone`.
pub fn is_allowed(
    at: DateTime<Utc>,
    zone: Tz,
    window: &SendingWindow,
    holidays: &HolidayCalendar,
) -> bool {
    let date = at.with_timezone(&zone).date_naive();
    let (start, end) = window.span(date, zone);
    window.allows_day(date, holidays) && start <= at && at < end
}

/// The first instant at or after `earliest` inside the window in `zone`; `None` when nothing is
/// allowed within the horizon.
pub fn next_allowed(
    earliest: DateTime<Utc>,
    zone: Tz,
    window: &SendingWindow,
    holidays: &HolidayCalendar,
) -> Option<DateTime<Utc>> {
    let first = earliest.with_timezone(&zone).date_naive();
    (0..HORIZON_DAYS).find_map(|offset| {
        let date = first.checked_add_days(Days::new(offset))?;
        if !window.allows_day(date, holidays) {
            return None;
        }
        let (start, end) = window.span(date, zone);
        let at = start.max(earliest);
        (at < end).then_some(at)
    })
}

/// The first instant at or after `earliest` inside the window in every one of `zones`; `None`
/// when the zones' windows never meet within the horizon (or `zones` is empty).
pub fn next_allowed_everywhere(
    earliest: DateTime<Utc>,
    zones: &[Tz],
    window: &SendingWindow,
    holidays: &HolidayCalendar,
) -> Option<DateTime<Utc>> {
    let horizon = earliest + chrono::Duration::days(HORIZON_DAYS as i64);
    let mut candidate = earliest;
    // Each round moves the candidate to the latest of the zones' next openings; when no zone
    // moves it, it is open everywhere. Each round moves forward, so it ends.
    while candidate < horizon {
        let mut latest = candidate;
        for zone in zones {
            latest = latest.max(next_allowed(candidate, *zone, window, holidays)?);
        }
        if latest == candidate {
            return (!zones.is_empty()).then_some(candidate);
        }
        candidate = latest;
    }
    None
}

/// Countries whose public holidays are France's: the mainland, Monaco aside, and the overseas
/// departments and collectivities that have their own country codes in the numbering plan.
const FRENCH_CALENDAR: &[&str] = &["FR", "RE", "GP", "MQ", "GF", "YT", "PM", "BL", "MF"];

/// What schedules a survey: the sending window, the public holidays of each country, and the
/// zone of a number whose country tells none.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulingRules {
    window: SendingWindow,
    default_zone: Tz,
    calendars: std::collections::BTreeMap<String, HolidayCalendar>,
    no_holidays: HolidayCalendar,
}

impl SchedulingRules {
    /// `window` everywhere, France's holidays where they apply, none elsewhere.
    pub fn new(window: SendingWindow, default_zone: Tz) -> SchedulingRules {
        SchedulingRules {
            window,
            default_zone,
            calendars: FRENCH_CALENDAR
                .iter()
                .map(|country| (country.to_string(), HolidayCalendar::france()))
                .collect(),
            no_holidays: HolidayCalendar::none(),
        }
    }

    pub fn window(&self) -> &SendingWindow {
        &self.window
    }

    pub fn default_zone(&self) -> Tz {
        self.default_zone
    }

    /// The public holidays of `country` (ISO 3166 alpha-2).
    pub fn calendar(&self, country: &str) -> &HolidayCalendar {
        self.calendars.get(country).unwrap_or(&self.no_holidays)
    }

    pub fn set_calendar(&mut self, country: &str, calendar: HolidayCalendar) {
        self.calendars.insert(country.to_string(), calendar);
    }

    /// The zones a number of `country` may be in; the default zone when none is known.
    pub fn zones(&self, country: Option<&str>) -> Vec<Tz> {
        match country.map(zones_of_country) {
            Some(zones) if !zones.is_empty() => zones.to_vec(),
            _ => vec![self.default_zone],
        }
    }

    /// The window for a flow: the configured one, narrowed by the flow. `None` when the
    /// narrowing leaves nothing.
    fn window_for(&self, narrowing: Option<&WindowNarrowing>) -> Option<SendingWindow> {
        match narrowing {
            Some(narrowing) => self.window.narrowed(narrowing),
            None => Some(self.window.clone()),
        }
    }

    /// When a survey about an event at `event_at` goes out to a number of `country`: after the
    /// flow's `delay`, not before `now`, at the first instant inside the (flow-narrowed) window
    /// in every zone the number may be in, holidays excluded. `None` when that never happens.
    pub fn planned_send(
        &self,
        event_at: DateTime<Utc>,
        delay: std::time::Duration,
        now: DateTime<Utc>,
        country: Option<&str>,
        narrowing: Option<&WindowNarrowing>,
    ) -> Option<DateTime<Utc>> {
        let delay = chrono::Duration::from_std(delay).ok()?;
        let earliest = event_at.checked_add_signed(delay)?.max(now);
        let window = self.window_for(narrowing)?;
        let holidays = self.calendar(country.unwrap_or_default());
        next_allowed_everywhere(earliest, &self.zones(country), &window, holidays)
    }

    /// At the moment of sending: `None` when `now` is inside the window for this number, else
    /// the instant it opens again (a backlog never spills into the night). A window that never
    /// opens holds the message for a day, to be looked at again.
    pub fn hold_until(
        &self,
        now: DateTime<Utc>,
        country: Option<&str>,
        narrowing: Option<&WindowNarrowing>,
    ) -> Option<DateTime<Utc>> {
        let next = self
            .window_for(narrowing)
            .and_then(|window| {
                next_allowed_everywhere(
                    now,
                    &self.zones(country),
                    &window,
                    self.calendar(country.unwrap_or_default()),
                )
            })
            .unwrap_or(now + chrono::Duration::days(1));
        (next > now).then_some(next)
    }
}

/// When the quota period holding `now` began: midnight today, on Monday of this week or on the
/// first of this month, in `zone` (a midnight that a daylight-saving change skips is the first
/// instant after it).
pub fn quota_period_start(now: DateTime<Utc>, period: QuotaPeriod, zone: Tz) -> DateTime<Utc> {
    let today = now.with_timezone(&zone).date_naive();
    let first_day = match period {
        QuotaPeriod::Day => today,
        QuotaPeriod::Week => today - Days::new(u64::from(today.weekday().num_days_from_monday())),
        QuotaPeriod::Month => today.with_day(1).expect("every month has a first day"),
    };
    resolve(zone, first_day, NaiveTime::MIN)
}

#[cfg(test)]
mod tests;
