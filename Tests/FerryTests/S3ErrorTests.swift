@testable import FerryS3
import FerryCore
import Testing

/// How an S3 failure is classed: retried, failing one item, or failing the run; and which
/// ones are the server refusing a request outright.
@Suite struct S3ErrorTests {
    func error(_ status: Int?, _ s3Code: String? = nil, _ code: ErrorCode = .http) -> S3Error {
        S3Error(code, operation: "CopyObject", bucket: "b", key: "dir/", status: status, s3Code: s3Code, message: "m")
    }

    @Test func retryClassFollowsStatusAndCode() {
        #expect(error(500).retryClass == .retryable)
        #expect(error(503, "SlowDown").retryClass == .retryable)
        #expect(error(400, "RequestTimeout").retryClass == .retryable)
        #expect(error(429).retryClass == .retryable)
        #expect(error(400, "BadDigest").retryClass == .retryable)
        #expect(error(nil, nil, .transport).retryClass == .retryable)
        #expect(error(403, "AccessDenied").retryClass == .fatal)
        #expect(error(404, "NoSuchBucket").retryClass == .fatal)
        #expect(error(403, "SignatureDoesNotMatch").retryClass == .fatal)
        #expect(error(404, "NoSuchKey").retryClass == .itemFailed)
        #expect(error(nil, nil, .badResponse).retryClass == .itemFailed)
    }

    @Test func refusalIsAFourHundredOrNotImplemented() {
        for status in [400, 403, 404, 405, 409, 501] { #expect(error(status).isRefusal, "HTTP \(status)") }
        for status in [500, 502, 503, 504] { #expect(!error(status).isRefusal, "HTTP \(status)") }
        #expect(!error(nil, nil, .transport).isRefusal)
    }

    @Test func descriptionNamesOperationPlaceStatusAndRequest() {
        var e = error(501, "NotImplemented")
        e.requestID = "r1"
        #expect(e.description == "CopyObject failed on s3://b/dir/: HTTP 501 NotImplemented: m (request id r1)")
    }
}
