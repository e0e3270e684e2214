import FerryEngine
import FerryStore
import Foundation
import Synchronization

/// An execution's log at DataSync's LogLevel: OFF (nothing), BASIC (start, end, errors),
/// TRANSFER (also one line per file transferred, verified, deleted or skipped). Lines are
/// buffered and handed to `write` in batches: the store on the built-in agent, the channel
/// to the control plane on an agent.
final class ExecutionLog: Sendable {
    let level: String
    private let write: @Sendable ([String]) -> Void
    private let buffer = Mutex<[String]>([])
    private static let timestamp = Date.ISO8601FormatStyle()

    init(level: String, write: @escaping @Sendable ([String]) -> Void) {
        self.level = level
        self.write = write
    }

    /// A log written to the store under `execution`.
    convenience init(store: Store, execution: String, level: String) {
        self.init(level: level) { lines in try? store.appendLog(execution, lines) }
    }

    func basic(_ line: String) {
        guard level != "OFF" else { return }
        add(line)
    }

    private func add(_ line: String) {
        let stamp = Date().formatted(ExecutionLog.timestamp)
        let full = buffer.withLock { b -> Bool in
            b.append("\(stamp) \(line)")
            return b.count >= 500
        }
        if full { flush() }
    }

    func flush() {
        let lines = buffer.withLock { b -> [String] in
            defer { b = [] }
            return b
        }
        if !lines.isEmpty { write(lines) }
    }

    /// The engine's per-item events as log lines.
    var itemHandler: (@Sendable (ItemEvent) -> Void)? {
        guard level != "OFF" else { return nil }
        let transfer = level == "TRANSFER"
        return { [self] e in
            switch e.kind {
            case .fail: self.add("[ERROR] \(e.path): \(e.reason ?? "failed")")
            case .skip: self.add("[WARN] Skipped \(e.path): \(e.reason ?? "skipped")")
            default:
                if transfer { self.add("[NOTICE] \(ExecutionLog.verb(e.kind)) \(e.entryKind == .directory ? "directory" : "file") \(e.path), \(e.size) bytes") }
            }
        }
    }

    static func verb(_ kind: ItemEvent.Kind) -> String {
        switch kind {
        case .create: "Transferred"
        case .update: "Transferred"
        case .delete: "Deleted"
        default: "\(kind.rawValue.capitalized)"
        }
    }
}
