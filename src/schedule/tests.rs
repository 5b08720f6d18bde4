use super::*;
use chrono_tz::{America, Europe, Pacific};
use proptest::prelude::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn time(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

#[test]
fn easter_falls_on_the_published_dates() {
    for (year, month, day) in [
        (2000, 4, 23),
        (2008, 3, 23),
        (2019, 4, 21),
        (2024, 3, 31),
        (2025, 4, 20),
        (2026, 4, 5),
        (2027, 3, 28),
        (2038, 4, 25),
    ] {
        assert_eq!(easter_sunday(year), Some(date(year, month, day)), "{year}");
    }
}

#[test]
fn french_public_holidays_include_the_moving_ones() {
    let france = HolidayCalendar::france();
    let holidays_2026 = [
        date(2026, 1, 1),
        date(2026, 4, 6), // Easter Monday
        date(2026, 5, 1),
        date(2026, 5, 8),
        date(2026, 5, 14), // Ascension
        date(2026, 5, 25), // Whit Monday
        date(2026, 7, 14),
        date(2026, 8, 15),
        date(2026, 11, 1),
        date(2026, 11, 11),
        date(2026, 12, 25),
    ];
    for day in holidays_2026 {
        assert!(france.is_holiday(day), "{day}");
    }
    let mut count = 0;
    let mut day = date(2026, 1, 1);
    while day.year() == 2026 {
        count += usize::from(france.is_holiday(day));
        day = day.succ_opt().unwrap();
    }
    assert_eq!(count, holidays_2026.len(), "no other day of 2026");
    assert!(
        !france.is_holiday(date(2026, 4, 5)),
        "Easter Sunday is a Sunday, not a holiday of its own"
    );
    assert!(
        HolidayCalendar::none()
            .with_dates([date(2026, 5, 15)])
            .is_holiday(date(2026, 5, 15))
    );
}

#[test]
fn the_next_send_time_follows_the_window_in_local_time() {
    let window = SendingWindow::default();
    let france = HolidayCalendar::france();
    let paris = Europe::Paris;
    for (earliest, expected, why) in [
        (
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:00:00Z",
            "Monday 11:00 in Paris: at once",
        ),
        (
            "2026-11-23T06:30:00Z",
            "2026-11-23T07:00:00Z",
            "Monday 07:30: at 08:00",
        ),
        (
            "2026-11-23T19:30:00Z",
            "2026-11-24T07:00:00Z",
            "Monday 20:30: Tuesday 08:00",
        ),
        (
            "2026-11-21T19:00:00Z",
            "2026-11-23T07:00:00Z",
            "Saturday 20:00: Sunday skipped",
        ),
        (
            "2026-11-10T19:30:00Z",
            "2026-11-12T07:00:00Z",
            "Tuesday evening: 11 November skipped",
        ),
        (
            "2026-05-13T19:30:00Z",
            "2026-05-15T06:00:00Z",
            "the eve of Ascension, in summer time",
        ),
        (
            "2026-12-24T18:59:00Z",
            "2026-12-24T18:59:00Z",
            "Christmas Eve 19:59: still open",
        ),
        (
            "2026-12-24T19:00:00Z",
            "2026-12-26T07:00:00Z",
            "Christmas Eve 20:00: the 26th",
        ),
    ] {
        assert_eq!(
            next_allowed(utc(earliest), paris, &window, &france),
            Some(utc(expected)),
            "{why}"
        );
    }
}

#[test]
fn daylight_saving_changes_move_the_window_with_local_time() {
    let window =
        SendingWindow::new(&[Weekday::Sun, Weekday::Mon], time(2, 30), time(4, 0)).unwrap();
    let none = HolidayCalendar::none();
    // 29 March 2026, Paris: 02:00 becomes 03:00, so 02:30 does not exist; the window opens at
    // 03:00 local, 01:00 UTC.
    assert_eq!(
        next_allowed(utc("2026-03-28T23:00:00Z"), Europe::Paris, &window, &none),
        Some(utc("2026-03-29T01:00:00Z"))
    );
    // 25 October 2026: 02:30 happens twice; the window opens at the first, 00:30 UTC.
    assert_eq!(
        next_allowed(utc("2026-10-24T22:00:00Z"), Europe::Paris, &window, &none),
        Some(utc("2026-10-25T00:30:00Z"))
    );
    // The default window's 08:00 is 07:00 UTC in summer and 08:00 UTC in winter.
    let default = SendingWindow::default();
    assert_eq!(
        next_allowed(utc("2026-03-30T00:00:00Z"), Europe::Paris, &default, &none),
        Some(utc("2026-03-30T06:00:00Z"))
    );
    assert_eq!(
        next_allowed(utc("2026-10-26T00:00:00Z"), Europe::Paris, &default, &none),
        Some(utc("2026-10-26T07:00:00Z"))
    );
}

#[test]
fn several_zones_send_only_when_it_is_a_decent_hour_in_all_of_them() {
    let window = SendingWindow::default();
    let none = HolidayCalendar::none();
    let us = zones_of_country("US");
    // Monday 23 November 2026, 13:00 UTC: 08:00 in New York but 03:00 in Honolulu. Honolulu
    // opens at 18:00 UTC; New York is still open then (13:00 local) and closes at 01:00 UTC.
    assert_eq!(
        next_allowed_everywhere(utc("2026-11-23T13:00:00Z"), us, &window, &none),
        Some(utc("2026-11-23T18:00:00Z"))
    );
    // Paris and Nouméa are ten hours apart: a twelve-hour window meets in a two-hour slot.
    let both = [Europe::Paris, Pacific::Noumea];
    assert_eq!(
        next_allowed_everywhere(utc("2026-11-23T00:00:00Z"), &both, &window, &none),
        Some(utc("2026-11-23T07:00:00Z"))
    );
    // In the northern winter Paris (UTC+1) and Auckland (UTC+13, its summer) are twelve hours
    // apart: one window closes as the other opens, so they never share an instant — until
    // Paris's clocks go forward on 28 March 2027, a week before Auckland's go back, and the
    // windows overlap from 06:00 to 07:00 UTC (08:00 in Paris, 19:00 in Auckland).
    let opposite = [Europe::Paris, Pacific::Auckland];
    assert_eq!(
        next_allowed_everywhere(utc("2026-11-23T00:00:00Z"), &opposite, &window, &none),
        Some(utc("2027-03-29T06:00:00Z"))
    );
    assert_eq!(
        next_allowed_everywhere(utc("2026-11-23T00:00:00Z"), &[], &window, &none),
        None
    );
}

#[test]
fn a_flow_narrows_the_window_and_never_widens_it() {
    let window = SendingWindow::default();
    let narrowing = WindowNarrowing {
        days: Some(vec![Weekday::Sat, Weekday::Sun]),
        from: Some(time(7, 0)),
        to: Some(time(19, 0)),
    };
    let narrowed = window.narrowed(&narrowing).unwrap();
    assert_eq!(
        narrowed,
        SendingWindow::new(&[Weekday::Sat], time(8, 0), time(19, 0)).unwrap(),
        "Sunday stays closed and 07:00 stays 08:00"
    );
    let nothing = WindowNarrowing {
        days: Some(vec![Weekday::Sun]),
        from: None,
        to: None,
    };
    assert_eq!(window.narrowed(&nothing), None);
    assert_eq!(
        SendingWindow::new(&[Weekday::Mon], time(9, 0), time(9, 0)),
        None
    );
    // Fridays only, with the next fifty Fridays off: the first Friday after them.
    let fridays = SendingWindow::new(&[Weekday::Fri], time(8, 0), time(20, 0)).unwrap();
    let every_friday =
        HolidayCalendar::none().with_dates((0..50).map(|w| date(2026, 11, 27) + Days::new(7 * w)));
    assert_eq!(
        next_allowed(
            utc("2026-11-23T00:00:00Z"),
            America::New_York,
            &fridays,
            &every_friday
        ),
        Some(utc("2027-11-12T13:00:00Z")),
        "08:00 in New York on the first Friday after them"
    );
    let every_friday_for_years =
        HolidayCalendar::none().with_dates((0..120).map(|w| date(2026, 11, 27) + Days::new(7 * w)));
    assert_eq!(
        next_allowed(
            utc("2026-11-23T00:00:00Z"),
            America::New_York,
            &fridays,
            &every_friday_for_years
        ),
        None,
        "nothing allowed within the horizon"
    );
}

#[test]
fn every_country_listed_has_its_mainland_zone_first() {
    assert_eq!(zones_of_country("FR"), &[Europe::Paris]);
    assert_eq!(zones_of_country("US")[0], America::New_York);
    assert!(zones_of_country("ZZ").is_empty());
}

/// Countries outside hearback's own table take their zones from the tz database: a Japanese,
/// Moroccan or Senegalese number is texted in its own daytime, not in Paris's.
#[test]
fn every_other_country_takes_its_zones_from_the_tz_database() {
    use chrono_tz::{Africa, America, Asia};
    let cases: [(&str, &[Tz]); 5] = [
        ("JP", &[Asia::Tokyo]),
        ("MA", &[Africa::Casablanca]),
        ("SN", &[Africa::Abidjan]),
        ("TN", &[Africa::Tunis]),
        ("CI", &[Africa::Abidjan]),
    ];
    for (country, zones) in cases {
        assert_eq!(zones_of_country(country), zones, "{country}");
    }
    let brazil = zones_of_country("BR");
    assert!(brazil.contains(&America::Sao_Paulo), "{brazil:?}");
    // The table of the countries texted most keeps its own choice.
    assert_eq!(zones_of_country("US").len(), 7);
}

/// A Japanese number is planned in Tokyo's window: an event at 22:00 in Tokyo (15:00 in Paris)
/// goes out at 08:00 the next morning in Tokyo, not at once.
#[test]
fn a_number_of_a_country_outside_the_table_is_texted_in_its_own_daytime() {
    let rules = french_rules();
    let event = utc("2026-11-24T13:00:00Z"); // 22:00 in Tokyo, a Tuesday
    let planned = rules
        .planned_send(event, std::time::Duration::ZERO, event, Some("JP"), None)
        .unwrap();
    assert_eq!(planned, utc("2026-11-24T23:00:00Z")); // Wednesday 08:00 in Tokyo
}

const ZONES: [Tz; 6] = [
    Europe::Paris,
    America::New_York,
    America::St_Johns,
    Pacific::Noumea,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Australia::Adelaide,
];

proptest! {
    #[test]
    fn the_next_send_time_is_allowed_and_nothing_earlier_is(
        seconds in 1_767_225_600i64..1_830_297_600, // 2026 to 2027
        zone in 0usize..ZONES.len(),
    ) {
        let zone = ZONES[zone];
        let earliest = Utc.timestamp_opt(seconds, 0).unwrap();
        let window = SendingWindow::default();
        let france = HolidayCalendar::france();
        let next = next_allowed(earliest, zone, &window, &france).expect("always a day within a year");
        prop_assert!(next >= earliest);
        prop_assert!(is_allowed(next, zone, &window, &france));
        prop_assert!(next - earliest < chrono::Duration::days(4), "never more than a long weekend away");
        // Every minute in between is closed.
        let mut probe = earliest;
        while probe < next {
            prop_assert!(!is_allowed(probe, zone, &window, &france), "{probe} was open");
            probe += chrono::Duration::minutes(29);
        }
    }

    #[test]
    fn an_instant_allowed_everywhere_is_allowed_in_each_zone(
        seconds in 1_767_225_600i64..1_830_297_600,
        first in 0usize..ZONES.len(),
        second in 0usize..ZONES.len(),
    ) {
        let zones = [ZONES[first], ZONES[second]];
        let earliest = Utc.timestamp_opt(seconds, 0).unwrap();
        let window = SendingWindow::default();
        let none = HolidayCalendar::none();
        if let Some(at) = next_allowed_everywhere(earliest, &zones, &window, &none) {
            prop_assert!(at >= earliest);
            for zone in zones {
                prop_assert!(is_allowed(at, zone, &window, &none));
            }
        }
    }
}

fn french_rules() -> SchedulingRules {
    SchedulingRules::new(SendingWindow::default(), Europe::Paris)
}

#[test]
fn a_survey_is_planned_after_its_delay_at_the_next_decent_hour_for_the_number() {
    let rules = french_rules();
    let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
    // A Monday, 10:00 in Paris.
    let now = utc("2026-11-02T09:00:00Z");
    // (event, delay, country, planned)
    let cases = [
        // Saturday 21:30 in Paris: not Sunday, Monday 08:00.
        (
            "2026-11-28T20:30:00Z",
            hours(0),
            Some("FR"),
            "2026-11-30T07:00:00Z",
        ),
        // A weekday afternoon, two hours later: still inside the window.
        (
            "2026-11-24T13:00:00Z",
            hours(2),
            Some("FR"),
            "2026-11-24T15:00:00Z",
        ),
        // The delay carries it past 20:00: the next morning.
        (
            "2026-11-24T17:30:00Z",
            hours(2),
            Some("FR"),
            "2026-11-25T07:00:00Z",
        ),
        // The eve of a holiday: 11 November 2026 is a Wednesday, nothing goes out that day.
        (
            "2026-11-10T19:30:00Z",
            hours(0),
            Some("FR"),
            "2026-11-12T07:00:00Z",
        ),
        // An event in the past is sent now when now is a decent hour.
        (
            "2026-10-25T10:00:00Z",
            hours(2),
            Some("FR"),
            "2026-11-02T09:00:00Z",
        ),
        // Réunion is UTC+4: 08:00 there is 04:00 UTC, and France's holidays apply.
        (
            "2026-11-23T17:00:00Z",
            hours(0),
            Some("RE"),
            "2026-11-24T04:00:00Z",
        ),
        // Belgium has no built-in holidays: 11 November is a working day there.
        (
            "2026-11-10T19:30:00Z",
            hours(0),
            Some("BE"),
            "2026-11-11T07:00:00Z",
        ),
        // A country with no known zone (or no country) uses the default zone.
        (
            "2026-11-28T20:30:00Z",
            hours(0),
            None,
            "2026-11-30T07:00:00Z",
        ),
    ];
    for (event, delay, country, planned) in cases {
        assert_eq!(
            rules.planned_send(utc(event), delay, now, country, None),
            Some(utc(planned)),
            "{event} + {delay:?} for {country:?}"
        );
    }
}

#[test]
fn a_flow_narrowing_applies_to_the_planned_send() {
    let rules = french_rules();
    let narrowing = WindowNarrowing {
        days: None,
        from: Some(time(9, 0)),
        to: Some(time(19, 0)),
    };
    let planned = rules.planned_send(
        utc("2026-11-28T20:30:00Z"),
        std::time::Duration::ZERO,
        utc("2026-11-20T09:00:00Z"),
        Some("FR"),
        Some(&narrowing),
    );
    assert_eq!(planned, Some(utc("2026-11-30T08:00:00Z")));
    let impossible = WindowNarrowing {
        days: Some(vec![chrono::Weekday::Sun]),
        from: None,
        to: None,
    };
    assert_eq!(
        rules.planned_send(
            utc("2026-11-28T20:30:00Z"),
            std::time::Duration::ZERO,
            utc("2026-11-20T09:00:00Z"),
            Some("FR"),
            Some(&impossible),
        ),
        None,
        "a flow that only sends on Sundays never sends"
    );
}

#[test]
fn at_the_moment_of_sending_a_message_outside_the_window_is_held_until_it_opens() {
    let rules = french_rules();
    // Inside the window: sent now.
    assert_eq!(
        rules.hold_until(utc("2026-11-24T10:00:00Z"), Some("FR"), None),
        None
    );
    // A backlog still draining at 20:00 in Paris waits for the morning.
    assert_eq!(
        rules.hold_until(utc("2026-11-24T19:00:00Z"), Some("FR"), None),
        Some(utc("2026-11-25T07:00:00Z"))
    );
    // On a Sunday: Monday morning.
    assert_eq!(
        rules.hold_until(utc("2026-11-29T10:00:00Z"), Some("FR"), None),
        Some(utc("2026-11-30T07:00:00Z"))
    );
}

#[test]
fn a_quota_period_starts_at_local_midnight_of_its_day_week_or_month() {
    let paris = chrono_tz::Europe::Paris;
    for (now, period, start) in [
        // Wednesday 25 November, 10:00 in Paris (UTC+1).
        (
            "2026-11-25T09:00:00Z",
            QuotaPeriod::Day,
            "2026-11-24T23:00:00Z",
        ),
        (
            "2026-11-25T09:00:00Z",
            QuotaPeriod::Week,
            "2026-11-22T23:00:00Z",
        ),
        (
            "2026-11-25T09:00:00Z",
            QuotaPeriod::Month,
            "2026-10-31T23:00:00Z",
        ),
        // 23:30 UTC on the 30th is already 1 December in Paris.
        (
            "2026-11-30T23:30:00Z",
            QuotaPeriod::Month,
            "2026-11-30T23:00:00Z",
        ),
        (
            "2026-11-30T23:30:00Z",
            QuotaPeriod::Day,
            "2026-11-30T23:00:00Z",
        ),
        // A Monday is its own week's first day.
        (
            "2026-11-23T08:00:00Z",
            QuotaPeriod::Week,
            "2026-11-22T23:00:00Z",
        ),
        // A Sunday belongs to the week that began on the Monday before.
        (
            "2026-11-29T12:00:00Z",
            QuotaPeriod::Week,
            "2026-11-22T23:00:00Z",
        ),
        // April: the month began in winter time (UTC+1), now is summer time (UTC+2).
        (
            "2026-04-15T12:00:00Z",
            QuotaPeriod::Month,
            "2026-03-31T22:00:00Z",
        ),
        (
            "2026-03-30T12:00:00Z",
            QuotaPeriod::Week,
            "2026-03-29T22:00:00Z",
        ),
        (
            "2026-03-29T12:00:00Z",
            QuotaPeriod::Week,
            "2026-03-22T23:00:00Z",
        ),
    ] {
        assert_eq!(
            quota_period_start(utc(now), period, paris),
            utc(start),
            "{now} {period:?}"
        );
    }
    // Where a daylight-saving change skips midnight (Santiago, September), the day starts at
    // the first instant that exists: 01:00 local.
    assert_eq!(
        quota_period_start(
            utc("2026-09-06T15:00:00Z"),
            QuotaPeriod::Day,
            chrono_tz::America::Santiago
        ),
        utc("2026-09-06T04:00:00Z")
    );
}

proptest! {
    /// A quota period holds the instant it is computed for, and began less than a month ago.
    #[test]
    fn a_quota_period_holds_now(
        seconds in 1_700_000_000i64..1_900_000_000,
        period in prop::sample::select(vec![QuotaPeriod::Day, QuotaPeriod::Week, QuotaPeriod::Month]),
        zone in prop::sample::select(vec![Europe::Paris, America::New_York, Pacific::Tahiti, chrono_tz::America::Santiago]),
    ) {
        let now = DateTime::from_timestamp(seconds, 0).unwrap();
        let start = quota_period_start(now, period, zone);
        prop_assert!(start <= now);
        prop_assert!(now - start < chrono::Duration::days(32));
    }

    /// Whatever the event and the delay, the planned send is never before the event plus its
    /// delay, never before now, and inside the window where it is looked at again.
    #[test]
    fn a_planned_send_is_never_early_and_never_held_again(
        event_offset in 0i64..(60 * 24 * 60),
        delay_minutes in 0u64..(3 * 24 * 60),
        country in prop::sample::select(vec!["FR", "BE", "US", "RE", "PF"]),
    ) {
        let rules = french_rules();
        let now = utc("2026-11-20T09:00:00Z");
        let event = now + chrono::Duration::minutes(event_offset);
        let delay = std::time::Duration::from_secs(delay_minutes * 60);
        let planned = rules.planned_send(event, delay, now, Some(country), None).unwrap();
        prop_assert!(planned >= now);
        prop_assert!(planned >= event + chrono::Duration::from_std(delay).unwrap());
        prop_assert_eq!(rules.hold_until(planned, Some(country), None), None);
    }
}
