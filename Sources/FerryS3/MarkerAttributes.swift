import FerryCore
import Synchronization

/// What is known of directory markers without asking the server again.
///
/// - The extended attributes of markers HEADed while listing their parents, or just written
///   by ``S3Location/setMetadata(_:kind:metadata:selection:)``, kept until the directory's
///   own turn asks for them (a finalize applies them at the other side, or compares them
///   with the source's): one HEAD per marker instead of two. Each is taken once, and a write
///   to a marker drops its entry (``S3Location/forget(_:)``), so what is handed out is what
///   was last seen or written of a marker nobody has written since.
/// - Markers of directories made in this run: none exists yet (the parent's listing showed
///   nothing under the prefix), so the first write of one needs no HEAD for what it holds.
final class MarkerAttributes: Sendable {
    private let byKey = Mutex<[String: [ExtendedAttribute]]>([:])
    private let absent = Mutex<Set<String>>([])

    /// `key` names a directory made in this run, with no marker yet.
    func made(_ key: String) {
        _ = absent.withLock { $0.insert(key) }
    }

    /// Whether `key` is a marker not written yet (see ``made(_:)``); said once.
    func takeAbsent(_ key: String) -> Bool {
        absent.withLock { $0.remove(key) != nil }
    }

    func note(_ key: String, _ attributes: [ExtendedAttribute]) {
        byKey.withLock { $0[key] = attributes }
    }

    func take(_ key: String) -> [ExtendedAttribute]? {
        byKey.withLock { $0.removeValue(forKey: key) }
    }

    func drop(_ key: String) {
        byKey.withLock { _ = $0.removeValue(forKey: key) }
    }
}
