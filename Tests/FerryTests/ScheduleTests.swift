@testable import FerryServer
import Foundation
import Testing

/// Schedule expressions as DataSync (EventBridge) reads them, in UTC.
@Suite struct ScheduleTests {
    /// 2026-11-22 10:17:30 UTC, a Sunday.
    let sunday = Date(timeIntervalSince1970: 1_795_342_650)

    func utc(_ text: String) -> Date {
        let f = ISO8601DateFormatter()
        return f.date(from: text)!
    }

    @Test func cronFiresAtTheNextMatchingMinute() throws {
        #expect(utc("2026-11-22T10:17:30Z") == sunday)
        #expect(try Schedule("cron(0 12 ? * SUN,WED *)").next(after: sunday) == utc("2026-11-22T12:00:00Z"))
        #expect(try Schedule("cron(0 12 ? * SUN,WED *)").next(after: utc("2026-11-22T12:00:00Z")) == utc("2026-11-25T12:00:00Z"))
        #expect(try Schedule("cron(* * * * ? *)").next(after: sunday) == utc("2026-11-22T10:18:00Z"))
        #expect(try Schedule("cron(15 */6 * * ? *)").next(after: sunday) == utc("2026-11-22T12:15:00Z"))
        #expect(try Schedule("cron(0 0 1 JAN ? 2027-2030)").next(after: sunday) == utc("2027-01-01T00:00:00Z"))
        #expect(try Schedule("cron(0 0 1 JAN ? 2025)").next(after: sunday) == nil, "a year in the past never fires")
    }

    @Test func rateCountsFromWhenItWasSet() throws {
        #expect(try Schedule("rate(12 hours)").next(after: sunday) == sunday.addingTimeInterval(12 * 3600))
        #expect(try Schedule("rate(1 day)").shortestInterval(after: sunday) == 86400)
    }

    @Test func expressionsDataSyncRefusesAreRefused() {
        for bad in ["rate(0 minutes)", "rate(5 weeks)", "cron(0 12 * * * *)", "cron(0 12 ? * ? *)", "cron(61 * * * ? *)", "every hour"] {
            #expect(throws: ServerError.self, "\(bad)") { try Schedule(bad) }
        }
    }

    @Test func theMinimumIntervalIsEnforced() throws {
        #expect(throws: ServerError.self) { try Schedule("cron(*/30 * * * ? *)").requireInterval(atLeast: 3600, now: sunday) }
        #expect(throws: ServerError.self) { try Schedule("rate(59 minutes)").requireInterval(atLeast: 3600, now: sunday) }
        try Schedule("cron(0 * * * ? *)").requireInterval(atLeast: 3600, now: sunday)
        try Schedule("cron(0 12 ? * SUN,WED *)").requireInterval(atLeast: 3600, now: sunday)
        try Schedule("rate(1 minute)").requireInterval(atLeast: 60, now: sunday)
    }
}
