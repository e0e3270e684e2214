import FerryCore
import FerryEngine
import Foundation

/// Everything `ferry sync` prints: item lines (-v, --dry-run), the summary, errors.
struct Output: Sendable {
    let json: Bool
    let quiet: Bool
    let verbose: Bool
    let dryRun: Bool

    func fatal(_ message: String) {
        FileHandle.standardError.write(Data("ferry: error: \(message)\n".utf8))
    }

    /// Prints one line per item: `create /a/b`, or in a dry run `would create /a/b`.
    func itemPrinter() -> @Sendable (ItemEvent) -> Void {
        let dryRun = self.dryRun, json = self.json
        return { event in
            let prefix = dryRun ? "would \(event.kind.rawValue)" : event.kind.rawValue
            var line = "\(prefix) \(event.path)"
            if event.entryKind == .directory { line += "/" }
            if let reason = event.reason { line += " (\(reason))" }
            line += "\n"
            // With --json, stdout carries only the JSON summary.
            (json ? FileHandle.standardError : FileHandle.standardOutput).write(Data(line.utf8))
        }
    }

    func summary(_ result: ExecutionResult) {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            if let data = try? encoder.encode(result) {
                FileHandle.standardOutput.write(data + Data([10]))
            }
            return
        }
        let c = result.counters
        var lines: [String] = []
        let problems = result.problems
        if !quiet || result.status != .success {
            lines.append("Status: \(result.status)\(result.dryRun ? " (dry run: nothing was changed)" : "")")
            if let code = result.errorCode { lines.append("ErrorCode: \(code)") }
            if let detail = result.errorDetail { lines.append("ErrorDetail: \(detail)") }
        }
        if !quiet {
            lines.append("EstimatedFilesToTransfer: \(c.estimatedFilesToTransfer)  EstimatedBytesToTransfer: \(c.estimatedBytesToTransfer)")
            lines.append("FilesTransferred: \(c.filesTransferred)  BytesTransferred: \(c.bytesTransferred)  BytesWritten: \(c.bytesWritten)")
            lines.append("FilesUnchanged: \(c.filesUnchanged)  FilesDeleted: \(c.filesDeleted)  FilesSkipped: \(c.filesSkipped)  FilesFailed: \(c.filesFailed)")
            lines.append("FilesVerified: \(c.filesVerified)  VerificationFailures: \(c.verificationFailures)")
            lines.append("Prepare: \(result.prepareStatus) \(seconds(result.prepareDuration))  Transfer: \(result.transferStatus) \(seconds(result.transferDuration))  Verify: \(result.verifyStatus) \(seconds(result.verifyDuration))  Total: \(seconds(result.totalDuration))")
            if c.bytesTransferred > 0 && result.totalDuration > 0 {
                lines.append("Throughput: \(ProgressDisplay.bytes(Double(c.bytesTransferred) * 1000 / Double(result.totalDuration)))/s")
            }
        }
        for p in problems {
            let e = p.entry
            lines.append("\(e.status) [\(p.category.rawValue)\(e.failureKind.map { " \($0.rawValue)" } ?? "")] \(e.path): \(e.reason ?? "")")
        }
        if result.problemsNotListed > 0 {
            lines.append("… and \(result.problemsNotListed) more problems (see --report)")
        }
        if lines.isEmpty { return }
        let text = lines.joined(separator: "\n") + "\n"
        (result.status == .success ? FileHandle.standardOutput : FileHandle.standardError).write(Data(text.utf8))
    }

    private func seconds(_ ms: Int64) -> String {
        String(format: "%.3fs", Double(ms) / 1000)
    }
}
