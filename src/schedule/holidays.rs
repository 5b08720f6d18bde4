//! Public holidays: no survey is texted on one.

use chrono::{Datelike, Days, NaiveDate};

/// The days on which nothing is sent: fixed dates every year, days counted from Easter Sunday,
/// and single dates (a bridge day, a local holiday).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolidayCalendar {
    /// (month, day) every year.
    fixed: Vec<(u32, u32)>,
    /// Days after Easter Sunday (Western computus); 1 is Easter Monday.
    after_easter: Vec<u64>,
    dates: Vec<NaiveDate>,
}

impl HolidayCalendar {
    /// No holidays.
    pub fn none() -> HolidayCalendar {
        HolidayCalendar::default()
    }

    /// France's eleven public holidays (Code du travail, L3133-1): 1 January, Easter Monday,
    /// 1 May, 8 May, Ascension Thursday, Whit Monday, 14 July, 15 August, 1 November,
    /// 11 November, 25 December.
    pub fn france() -> HolidayCalendar {
        HolidayCalendar {
            fixed: vec![
                (1, 1),
                (5, 1),
                (5, 8),
                (7, 14),
                (8, 15),
                (11, 1),
                (11, 11),
                (12, 25),
            ],
            after_easter: vec![1, 39, 50],
            dates: Vec::new(),
        }
    }

    /// This calendar with more single dates.
    pub fn with_dates(mut self, dates: impl IntoIterator<Item = NaiveDate>) -> HolidayCalendar {
        self.dates.extend(dates);
        self
    }

    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.fixed.contains(&(date.month(), date.day()))
            || self.dates.contains(&date)
            || (!self.after_easter.is_empty()
                && easter_sunday(date.year()).is_some_and(|easter| {
                    self.after_easter
                        .iter()
                        .any(|days| easter.checked_add_days(Days::new(*days)) == Some(date))
                }))
    }
}

/// Easter Sunday of `year` in the Gregorian calendar (the anonymous Gregorian algorithm, also
/// known as Meeus/Jones/Butcher).
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}
