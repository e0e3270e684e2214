import FerryEngine
import Foundation

/// A live progress line on a terminal (stderr): phase, files and bytes done of the
/// estimate, throughput, ETA. Redrawn twice a second; nothing when not a terminal.
struct ProgressDisplay: Sendable {
    let counters: ExecutionCounters
    let enabled: Bool

    func whileRunning<T: Sendable>(_ body: @Sendable () async -> T) async -> T {
        guard enabled else { return await body() }
        let counters = self.counters
        let ticker = Task {
            let start = ContinuousClock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(500))
                let elapsed = ContinuousClock.now - start
                let line = ProgressDisplay.line(counters.snapshot(), phase: counters.currentPhase.description, elapsed: elapsed)
                FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            }
        }
        let result = await body()
        ticker.cancel()
        _ = await ticker.value
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        return result
    }

    static func line(_ c: CounterSnapshot, phase: String, elapsed: Duration) -> String {
        let seconds = max(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18, 0.001)
        let rate = Double(c.bytesTransferred) / seconds
        var eta = "--"
        let remaining = Double(c.estimatedBytesToTransfer - c.bytesTransferred)
        if rate > 0 && remaining > 0 && phase == "TRANSFERRING" {
            let s = Int(remaining / rate)
            eta = String(format: "%d:%02d", s / 60, s % 60)
        }
        return "[\(phase)] \(c.filesTransferred)/\(c.estimatedFilesToTransfer) files  \(bytes(Double(c.bytesTransferred)))/\(bytes(Double(c.estimatedBytesToTransfer)))  \(bytes(rate))/s  ETA \(eta)"
    }

    static func bytes(_ v: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = v
        var i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(Int(v)) B" : String(format: "%.1f %@", v, units[i])
    }
}
