import Foundation
import Glibc

/// A task schedule as DataSync (EventBridge) writes it: `rate(N minute|minutes|hour|hours|day|days)`
/// or `cron(MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK YEAR)` with `*`, `?`, lists, ranges,
/// steps and month/day names, in UTC.
struct Schedule: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        case rate(seconds: Int)
        case cron(fields: [Set<Int>])  // minute, hour, day of month, month, day of week (1 = Sunday), year
    }

    let kind: Kind
    let expression: String

    init(_ expression: String) throws {
        self.expression = expression
        let e = expression.trimmingCharacters(in: .whitespaces)
        func bad(_ why: String) -> ServerError { ServerError.invalid("Invalid ScheduleExpression \(expression): \(why)") }
        if e.hasPrefix("rate(") && e.hasSuffix(")") {
            let parts = e.dropFirst(5).dropLast().split(separator: " ")
            guard parts.count == 2, let n = Int(parts[0]), n > 0 else { throw bad("rate(N unit) with N a positive number") }
            let unit: Int
            switch parts[1] {
            case "minute", "minutes": unit = 60
            case "hour", "hours": unit = 3600
            case "day", "days": unit = 86400
            default: throw bad("the unit must be minutes, hours or days")
            }
            kind = .rate(seconds: n * unit)
        } else if e.hasPrefix("cron(") && e.hasSuffix(")") {
            let f = e.dropFirst(5).dropLast().split(separator: " ").map(String.init)
            guard f.count == 6 else { throw bad("cron() takes six fields: minutes hours day-of-month month day-of-week year") }
            let months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
            let days = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
            let ranges = [(0, 59, [String]()), (0, 23, []), (1, 31, []), (1, 12, months), (1, 7, days), (1970, 2199, [])]
            var fields: [Set<Int>] = []
            for (i, text) in f.enumerated() {
                guard let set = Schedule.field(text, ranges[i].0, ranges[i].1, names: ranges[i].2) else {
                    throw bad("cannot read field \(i + 1) \"\(text)\"")
                }
                fields.append(set)
            }
            if (f[2] == "?") == (f[4] == "?") { throw bad("exactly one of day-of-month and day-of-week must be ?") }
            kind = .cron(fields: fields)
        } else {
            throw bad("use rate(...) or cron(...)")
        }
    }

    static func field(_ text: String, _ lo: Int, _ hi: Int, names: [String]) -> Set<Int>? {
        if text == "*" || text == "?" { return Set(lo...hi) }
        var out = Set<Int>()
        for item in text.split(separator: ",") {
            var step = 1
            var range = String(item)
            if let slash = item.firstIndex(of: "/") {
                guard let s = Int(item[item.index(after: slash)...]), s > 0 else { return nil }
                step = s
                range = String(item[..<slash])
            }
            func value(_ s: String) -> Int? {
                if let n = Int(s) { return n }
                if let i = names.firstIndex(of: s.uppercased()) { return lo + i }
                return nil
            }
            let bounds: (Int, Int)
            if range == "*" {
                bounds = (lo, hi)
            } else if let dash = range.firstIndex(of: "-") {
                guard let a = value(String(range[..<dash])), let b = value(String(range[range.index(after: dash)...])) else { return nil }
                bounds = (a, b)
            } else {
                guard let a = value(range) else { return nil }
                bounds = (a, step > 1 ? hi : a)
            }
            guard bounds.0 >= lo, bounds.1 <= hi, bounds.0 <= bounds.1 else { return nil }
            out.formUnion(stride(from: bounds.0, through: bounds.1, by: step))
        }
        return out
    }

    /// The shortest gap between firings: a rate's period, or for cron the smallest gap among
    /// the next firings after `date` (enough to catch `*/5`-style minute and hour fields).
    func shortestInterval(after date: Date) -> TimeInterval? {
        if case .rate(let seconds) = kind { return TimeInterval(seconds) }
        var times: [Date] = []
        var t = date
        while times.count < 25, let n = next(after: t) {
            times.append(n)
            t = n
        }
        return zip(times, times.dropFirst()).map { $1.timeIntervalSince($0) }.min()
    }

    /// Refuses a schedule that would fire more often than `minimum` seconds (DataSync: one hour).
    func requireInterval(atLeast minimum: TimeInterval, now: Date = Date()) throws {
        guard let gap = shortestInterval(after: now), gap < minimum else { return }
        let text = minimum.truncatingRemainder(dividingBy: 3600) == 0 ? "\(Int(minimum / 3600)) hour(s)" : "\(Int(minimum / 60)) minute(s)"
        throw ServerError.invalid("Invalid ScheduleExpression \(expression): a task cannot be scheduled more often than every \(text) (this one fires every \(Int(gap / 60)) minute(s)).")
    }

    /// The first firing time strictly after `date`.
    func next(after date: Date) -> Date? {
        switch kind {
        case .rate(let seconds):
            return date.addingTimeInterval(TimeInterval(seconds))
        case .cron(let f):
            // Day by day (UTC), then the matching hours and minutes of a matching day.
            let first = Int((date.timeIntervalSince1970 / 60).rounded(.down)) * 60 + 60
            var day = first - first % 86400
            let hours = f[1].sorted(), minutes = f[0].sorted(), lastYear = f[5].max() ?? 2199
            for _ in 0..<(366 * 5) {
                var t = time_t(day)
                var c = tm()
                gmtime_r(&t, &c)
                let year = Int(c.tm_year) + 1900
                if year > lastYear { return nil }
                if f[5].contains(year), f[3].contains(Int(c.tm_mon) + 1), f[2].contains(Int(c.tm_mday)), f[4].contains(Int(c.tm_wday) + 1) {
                    for h in hours {
                        for m in minutes where day + h * 3600 + m * 60 >= first {
                            return Date(timeIntervalSince1970: TimeInterval(day + h * 3600 + m * 60))
                        }
                    }
                }
                day += 86400
            }
            return nil
        }
    }
}
