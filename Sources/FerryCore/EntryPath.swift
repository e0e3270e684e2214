import Glibc

/// A path relative to a location's root, kept as raw bytes (POSIX names are bytes, not text).
///
/// Components are separated by `/`; the root is the empty path. Byte-wise ordering of
/// names is the order listings are merged in.
public struct EntryPath: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The raw bytes, without a leading or trailing `/`.
    public let bytes: [UInt8]

    /// The location root.
    public static let root = EntryPath(validatedBytes: [])

    /// Wraps bytes already known to be a normalised relative path.
    public init(validatedBytes: [UInt8]) { self.bytes = validatedBytes }

    /// Parses a textual relative path such as `a/b/c`; returns nil for `..`, `.`, empty
    /// components, NUL bytes or a leading `/` (such a path could escape a root).
    public init?(_ text: String) {
        self.init(checking: Array(text.utf8))
    }

    /// Validates raw bytes as a safe relative path (see ``init(_:)``).
    public init?(checking bytes: [UInt8]) {
        if bytes.isEmpty { self.bytes = []; return }
        for component in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            guard EntryPath.isSafeName(component) else { return nil }
        }
        self.bytes = bytes
    }

    /// Whether `name` can be one component: not empty, not `.` or `..`, no `/` or NUL, ≤ 255 bytes.
    public static func isSafeName<C: Collection>(_ name: C) -> Bool where C.Element == UInt8 {
        if name.isEmpty || name.count > 255 { return false }
        if name.count <= 2 && name.allSatisfy({ $0 == UInt8(ascii: ".") }) { return false }
        return !name.contains(0) && !name.contains(UInt8(ascii: "/"))
    }

    public var isRoot: Bool { bytes.isEmpty }

    /// The path of a child named `name` (one component, raw bytes).
    public func appending(_ name: [UInt8]) -> EntryPath {
        if bytes.isEmpty { return EntryPath(validatedBytes: name) }
        var b = bytes
        b.reserveCapacity(bytes.count + 1 + name.count)
        b.append(UInt8(ascii: "/"))
        b.append(contentsOf: name)
        return EntryPath(validatedBytes: b)
    }

    /// The last component (empty for the root).
    public var name: [UInt8] { Array(lastComponent) }

    /// The last component as a slice of ``bytes`` (no copy).
    public var lastComponent: ArraySlice<UInt8> {
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return bytes[...] }
        return bytes[(slash + 1)...]
    }

    /// Whether this path names an entry directly inside `directory` (compares bytes in
    /// place, unlike `parent == directory`, which builds the parent).
    public func isChild(of directory: EntryPath) -> Bool {
        let n = directory.bytes.count, slash = UInt8(ascii: "/")
        // Called for every file (by the scheduler and the local copier): through the
        // buffers, the directory's bytes compared in one `memcmp`.
        return bytes.withUnsafeBufferPointer { b in
            if n == 0 { return !b.isEmpty && !b.contains(slash) }
            guard b.count > n + 1, b[n] == slash, !b[(n + 1)...].contains(slash) else { return false }
            return directory.bytes.withUnsafeBufferPointer { memcmp(b.baseAddress!, $0.baseAddress!, n) == 0 }
        }
    }

    /// The parent directory (the root's parent is the root).
    public var parent: EntryPath {
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return .root }
        return EntryPath(validatedBytes: Array(bytes[..<slash]))
    }

    /// Number of components.
    public var depth: Int { bytes.isEmpty ? 0 : bytes.reduce(1) { $1 == UInt8(ascii: "/") ? $0 + 1 : $0 } }

    /// Byte-wise order, components compared left to right (so a directory sorts before its children).
    public static func < (lhs: EntryPath, rhs: EntryPath) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }

    /// The path for display and reports: `/`-prefixed; bytes that are not valid UTF-8 and
    /// control characters are escaped as `\xNN`, a backslash as `\\`.
    public var description: String { "/" + EntryPath.displayName(bytes) }

    /// Escapes arbitrary name bytes for display (see ``description``).
    public static func displayName(_ bytes: [UInt8]) -> String {
        var out = ""
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b < 0x80 {
                if b < 0x20 || b == 0x7f { out += hex(b) } else if b == UInt8(ascii: "\\") { out += "\\\\" } else { out.unicodeScalars.append(Unicode.Scalar(b)) }
                i += 1
                continue
            }
            // Decode one UTF-8 scalar; escape the lead byte if it is not valid.
            var it = bytes[i...].makeIterator()
            var decoder = UTF8()
            if case .scalarValue(let s) = decoder.decode(&it) {
                out.unicodeScalars.append(s)
                i += String(s).utf8.count
            } else {
                out += hex(b)
                i += 1
            }
        }
        return out
    }

    private static func hex(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return "\\x" + String(digits[Int(b >> 4)]) + String(digits[Int(b & 15)])
    }
}
