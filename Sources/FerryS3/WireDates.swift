import Foundation
import Glibc

/// The three date forms S3 puts on the wire, parsed from their bytes without a formatter.
/// A `DateFormatter` per call (ICU underneath) cost more than everything else in a
/// download of small objects: `perf` of 2,000 GETs and HEADs put 46 % of all samples in
/// parsing `Last-Modified`.
enum WireDates {
    /// `YYYYMMDD'T'HHMMSS'Z'` (`X-Amz-Date`).
    static func parseAmz(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count == 16, b[8] == UInt8(ascii: "T"), b[15] == UInt8(ascii: "Z"),
              let year = number(b, 0..<4), let month = number(b, 4..<6), let day = number(b, 6..<8),
              let hour = number(b, 9..<11), let minute = number(b, 11..<13), let second = number(b, 13..<15)
        else { return nil }
        return instant(year, month, day, hour, minute, second)
    }

    /// ISO 8601 in UTC as ListObjectsV2 gives `LastModified`: `YYYY-MM-DD'T'HH:MM:SS'Z'`,
    /// optionally with a fraction of a second (`.000`).
    static func parseISO(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count >= 20, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: "T"),
              b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"), b.last == UInt8(ascii: "Z"),
              let year = number(b, 0..<4), let month = number(b, 5..<7), let day = number(b, 8..<10),
              let hour = number(b, 11..<13), let minute = number(b, 14..<16), let second = number(b, 17..<19)
        else { return nil }
        var fraction = 0.0
        if b.count > 20 {
            // ".d…dZ": at least one digit.
            guard b[19] == UInt8(ascii: "."), b.count > 21, let digits = number(b, 20..<(b.count - 1)) else { return nil }
            fraction = Double(digits) / pow(10, Double(b.count - 21))
        } else if b[19] != UInt8(ascii: "Z") {
            return nil
        }
        return instant(year, month, day, hour, minute, second).map { $0.addingTimeInterval(fraction) }
    }

    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .map { Array($0.utf8) }

    /// HTTP's IMF-fixdate (`Last-Modified`, `Date`): `Sun, 06 Nov 1994 08:49:37 GMT`. The
    /// weekday is not checked against the date (it is redundant); the zone must be GMT or UTC.
    static func parseHTTP(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count == 29, b[3] == UInt8(ascii: ","), b[4] == 32, b[7] == 32, b[11] == 32, b[16] == 32,
              b[19] == UInt8(ascii: ":"), b[22] == UInt8(ascii: ":"), b[25] == 32,
              b[26...] == Array("GMT".utf8)[...] || b[26...] == Array("UTC".utf8)[...],
              let monthIndex = months.firstIndex(where: { $0[...] == b[8..<11] }),
              let day = number(b, 5..<7), let year = number(b, 12..<16),
              let hour = number(b, 17..<19), let minute = number(b, 20..<22), let second = number(b, 23..<25)
        else { return nil }
        return instant(year, Int32(monthIndex + 1), day, hour, minute, second)
    }

    private static func number(_ b: [UInt8], _ range: Range<Int>) -> Int32? {
        guard !range.isEmpty, range.count <= 9 else { return nil }
        var n: Int32 = 0
        for c in b[range] {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) else { return nil }
            n = n * 10 + Int32(c - UInt8(ascii: "0"))
        }
        return n
    }

    private static func instant(_ year: Int32, _ month: Int32, _ day: Int32, _ hour: Int32, _ minute: Int32, _ second: Int32) -> Date? {
        guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var tm = Glibc.tm()
        tm.tm_year = year - 1900
        tm.tm_mon = month - 1
        tm.tm_mday = day
        tm.tm_hour = hour
        tm.tm_min = minute
        tm.tm_sec = second
        return Date(timeIntervalSince1970: TimeInterval(timegm(&tm)))
    }
}
