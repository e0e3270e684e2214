import FerryCore
import Synchronization

/// The extended attributes of directory markers HEADed while listing their parents, kept
/// until the directory's own turn asks for them (its finalize applies them at the other
/// side): one HEAD per marker instead of two. Each is taken once, and a write to a marker
/// drops its entry (``S3Location/forget(_:)``), so what is handed out is what the listing
/// saw of a marker nobody has written since.
final class MarkerAttributes: Sendable {
    private let byKey = Mutex<[String: [ExtendedAttribute]]>([:])

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
