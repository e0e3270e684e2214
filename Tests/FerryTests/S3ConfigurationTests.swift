@testable import FerryS3
import Crypto
import FerryTesting
import Foundation
import Testing

/// Endpoint, region, credentials and addressing from flags, the AWS environment and files.
@Suite struct S3ConfigurationTests {
    func home(credentials: String, config: String) throws -> String {
        let tree = try TestTree(label: "aws-home")
        try tree.file(".aws/credentials", Array(credentials.utf8))
        try tree.file(".aws/config", Array(config.utf8))
        return tree.root
    }

    @Test func profileFilesAreRead() throws {
        let home = try home(credentials: """
            [default]
            aws_access_key_id = DEFAULTKEY
            aws_secret_access_key = defaultsecret

            [work]
            aws_access_key_id = WORKKEY
            aws_secret_access_key = worksecret
            aws_session_token = worktoken
            """, config: """
            [default]
            region = eu-west-1

            [profile work]
            region = ap-south-1
            endpoint_url = https://storage.example.com:9443
            ca_bundle = /etc/ferry/ca.pem
            s3 =
              addressing_style = virtual
            """)
        defer { TestTree(existing: home).remove() }
        let d = try S3Configuration.endpoint(.init(), environment: [:], home: home)
        #expect(d.credentials.accessKeyID == "DEFAULTKEY" && d.region == "eu-west-1")
        #expect(d.url.absoluteString == "https://s3.eu-west-1.amazonaws.com" && !d.pathStyle)
        let w = try S3Configuration.endpoint(.init(), environment: ["AWS_PROFILE": "work"], home: home)
        #expect(w.credentials == AWSCredentials(accessKeyID: "WORKKEY", secretAccessKey: "worksecret", sessionToken: "worktoken"))
        #expect(w.region == "ap-south-1" && w.url.absoluteString == "https://storage.example.com:9443")
        #expect(w.caBundlePath == "/etc/ferry/ca.pem" && !w.pathStyle)
    }

    @Test func environmentBeatsFilesAndFlagsBeatEnvironment() throws {
        let home = try home(credentials: "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = filesecret\n", config: "[default]\nregion = eu-west-1\n")
        defer { TestTree(existing: home).remove() }
        let env = ["AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "envsecret", "AWS_SESSION_TOKEN": "envtoken",
                   "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-east-2", "AWS_ENDPOINT_URL": "http://generic:1",
                   "AWS_ENDPOINT_URL_S3": "http://s3only:2"]
        let e = try S3Configuration.endpoint(.init(), environment: env, home: home)
        #expect(e.credentials.accessKeyID == "ENVKEY" && e.credentials.sessionToken == "envtoken")
        #expect(e.region == "us-west-2")
        #expect(e.url.absoluteString == "http://s3only:2" && e.pathStyle)
        let f = try S3Configuration.endpoint(.init(endpointURL: "http://flag:3", region: "sa-east-1", addressingStyle: .virtual), environment: env, home: home)
        #expect(f.url.absoluteString == "http://flag:3" && f.region == "sa-east-1" && !f.pathStyle)
    }

    @Test func missingCredentialsAndBadEndpointsAreNamed() throws {
        #expect(throws: S3Error.self) { try S3Configuration.endpoint(.init(), environment: [:], home: "/nonexistent") }
        let env = ["AWS_ACCESS_KEY_ID": "K", "AWS_SECRET_ACCESS_KEY": "S"]
        do {
            _ = try S3Configuration.endpoint(.init(endpointURL: "ftp://x"), environment: env, home: "/nonexistent")
            Issue.record("an ftp endpoint was accepted")
        } catch let e as S3Error {
            #expect(e.description.contains("ftp://x"))
            #expect(!e.description.contains("S\""))
        }
        #expect(throws: S3Error.self) { try S3Configuration.parse(uri: "s3://A_B/x") }
        #expect(try S3Configuration.parse(uri: "s3://bucket-1/a/b/") == ("bucket-1", "a/b/"))
    }

    @Test func virtualHostedAndPathStyleRequests() throws {
        let creds = AWSCredentials(accessKeyID: "K", secretAccessKey: "S")
        let virtual = S3Endpoint(url: URL(string: "https://s3.eu-west-1.amazonaws.com")!, region: "eu-west-1", pathStyle: false, credentials: creds)
        #expect(virtual.hostHeader(bucket: "bkt") == "bkt.s3.eu-west-1.amazonaws.com")
        #expect(virtual.target(bucket: "bkt", key: "a b", rawQuery: "").url == "https://bkt.s3.eu-west-1.amazonaws.com/a%20b")
        // A name that is not one DNS label (dots break the wildcard certificate) goes path-style.
        #expect(virtual.hostHeader(bucket: "my.bucket") == "s3.eu-west-1.amazonaws.com")
        #expect(virtual.target(bucket: "my.bucket", key: "k", rawQuery: "").url == "https://s3.eu-west-1.amazonaws.com/my.bucket/k")
        let path = S3Endpoint(url: URL(string: "http://127.0.0.1:9000")!, region: "us-east-1", pathStyle: true, credentials: creds)
        #expect(path.hostHeader(bucket: "bkt") == "127.0.0.1:9000")
    }
}

/// The wire dates, parsed from bytes, against a `DateFormatter` as the oracle.
@Suite struct WireDateTests {
    static func oracle(_ format: String, _ text: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = format
        return f.date(from: text)
    }

    @Test func httpDatesMatchTheFormatter() {
        for text in ["Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 22 Nov 2026 16:20:18 GMT", "Thu, 29 Feb 2024 23:59:59 GMT",
                     "Fri, 31 Dec 1999 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"] {
            let expected = Self.oracle("EEE, dd MMM yyyy HH:mm:ss 'GMT'", text)
            #expect(expected != nil)
            #expect(WireDates.parseHTTP(text) == expected, "\(text)")
        }
        #expect(WireDates.parseHTTP("Sun, 06 Nov 1994 08:49:37 UTC") == Self.oracle("EEE, dd MMM yyyy HH:mm:ss 'UTC'", "Sun, 06 Nov 1994 08:49:37 UTC"))
        for bad in ["", "Sun, 06 Nov 1994 08:49:37 CET", "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:49:37 GMT",
                    "Sunday, 06-Nov-94 08:49:37 GMT", "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 32 Nov 1994 08:49:37 GMT"] {
            #expect(WireDates.parseHTTP(bad) == nil, "\(bad)")
        }
    }

    @Test func isoDatesMatchTheFormatter() {
        for (text, format) in [("2026-11-22T16:20:18.000Z", "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"), ("2026-11-22T16:20:18.123Z", "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"),
                               ("2009-10-12T17:50:30Z", "yyyy-MM-dd'T'HH:mm:ss'Z'"), ("2024-02-29T00:00:00.999Z", "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")] {
            let expected = Self.oracle(format, text)!
            let parsed = WireDates.parseISO(text)
            #expect(parsed.map { abs($0.timeIntervalSince(expected)) < 0.000_5 } == true, "\(text): \(String(describing: parsed)) vs \(expected)")
        }
        #expect(WireDates.parseISO("2026-11-22T16:20:18.5Z")!.timeIntervalSince1970.truncatingRemainder(dividingBy: 1) == 0.5)
        for bad in ["", "2026-11-22 16:20:18Z", "2026-11-22T16:20:18", "2026-13-22T16:20:18Z", "2026-11-22T16:20:18.Z", "2026-11-22T16:20:18+01:00"] {
            #expect(WireDates.parseISO(bad) == nil, "\(bad)")
        }
    }

    @Test func amzDatesRoundTrip() {
        let d = Date(timeIntervalSince1970: 1_795_364_418)
        #expect(WireDates.parseAmz(SigV4Signer.amzDate(d)) == d)
        #expect(WireDates.parseAmz("20150830T123600Z") == Self.oracle("yyyyMMdd'T'HHmmss'Z'", "20150830T123600Z"))
        #expect(WireDates.parseAmz("20150830T123600") == nil)
    }
}

/// The running ETag check: an empty object's (no bytes fed) and a multipart one's fed in
/// pieces that cross part boundaries, against MD5s computed here.
@Suite struct S3ETagCheckerTests {
    @Test func etagHeadersAreParsedOrRefused() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e"
        #expect(S3ETag("\"\(md5)\"") == S3ETag(digest: md5, parts: nil))
        #expect(S3ETag(" \"\(md5.uppercased())\" ") == S3ETag(digest: md5, parts: nil))
        #expect(S3ETag("\"\(md5)-12\"") == S3ETag(digest: md5, parts: 12))
        #expect(S3ETag("\"\(md5)-10000\"")?.parts == 10_000)
        // Through the entry's tag and back.
        #expect(S3ETag(S3ETag("\"\(md5.uppercased())-12\"")!.tag) == S3ETag(digest: md5, parts: 12))
        #expect(S3ETag(S3ETag(digest: md5, parts: nil).tag) == S3ETag(digest: md5, parts: nil))
        for bad in [nil, "", "\"\"", String(md5.dropLast()), md5 + "0", md5 + "-", md5 + "-0", md5 + "-10001", md5 + "-1-2",
                    md5 + "-x", "g" + md5.dropFirst(), "\"\(md5.dropLast())é\""] {
            #expect(S3ETag(bad) == nil, "\(bad ?? "nil")")
        }
    }

    @Test func emptyObjectMatchesTheMD5OfNothing() {
        let etag = S3ETag("\"d41d8cd98f00b204e9800998ecf8427e\"")!
        var checker = S3ETagChecker(expected: etag, partSizes: etag.partSizes(firstPart: 0, objectSize: 0)!)
        checker.feed(UnsafeRawBufferPointer(start: nil, count: 0))
        #expect(checker.fed == checker.total && checker.computed() == etag)
    }

    @Test func multipartFedAcrossPartBoundaries() {
        let bytes = (0..<2_500).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let parts = stride(from: 0, to: bytes.count, by: 1_000).map { Array(bytes[$0..<min($0 + 1_000, bytes.count)]) }
        let expected = S3ETag(partDigests: parts.flatMap { Array(Insecure.MD5.hash(data: $0)) }, multipart: parts.count)
        var checker = S3ETagChecker(expected: expected, partSizes: expected.partSizes(firstPart: 1_000, objectSize: 2_500)!)
        bytes.withUnsafeBytes { all in
            for range in [0..<999, 999..<2_001, 2_001..<2_500] { checker.feed(UnsafeRawBufferPointer(rebasing: all[range])) }
        }
        #expect(checker.fed == 2_500 && checker.computed() == expected && expected.description.hasSuffix("-3"))
    }
}
