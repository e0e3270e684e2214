import FerryStore
import Foundation

/// DataSync's service model (botocore's `service-2.json` for 2018-11-09, documentation
/// stripped; see Resources/NOTICE-datasync-model.txt): the operations and the shapes of
/// their inputs, with every type, enum, pattern, length and list limit. The server checks
/// each request against it, as the `aws` CLI does not.
public struct DataSyncModel: Sendable {
    struct Shape: Sendable {
        var type: String
        var members: [String: String] = [:]
        var required: [String] = []
        var member: String?
        var key: String?
        var value: String?
        var enumValues: [String]?
        var pattern: String?
        var min: Double?
        var max: Double?
    }

    let shapes: [String: Shape]
    /// Operation name → input shape name.
    public let operations: [String: String]
    private let patterns: [String: NSRegularExpressionBox]

    public static let shared: DataSyncModel = {
        guard let url = Bundle.module.url(forResource: "datasync-2018-11-09", withExtension: "json", subdirectory: "Resources"),
              let data = try? Data(contentsOf: url), let model = try? DataSyncModel(data) else {
            fatalError("the DataSync model resource is missing from the FerryServer bundle")
        }
        return model
    }()

    init(_ data: Data) throws {
        let json = try JSONValue.parse(data)
        var shapes: [String: Shape] = [:]
        for (name, s) in json["shapes"]?.object ?? [:] {
            var shape = Shape(type: s["type"]?.string ?? "structure")
            for (m, ref) in s["members"]?.object ?? [:] { shape.members[m] = ref["shape"]?.string }
            shape.required = s["required"]?.array?.compactMap(\.string) ?? []
            shape.member = s["member"]?["shape"]?.string
            shape.key = s["key"]?["shape"]?.string
            shape.value = s["value"]?["shape"]?.string
            shape.enumValues = s["enum"]?.array?.compactMap(\.string)
            shape.pattern = s["pattern"]?.string
            shape.min = s["min"]?.number
            shape.max = s["max"]?.number
            shapes[name] = shape
        }
        var operations: [String: String] = [:]
        for (name, op) in json["operations"]?.object ?? [:] { operations[name] = op["input"]?["shape"]?.string ?? "" }
        var patterns: [String: NSRegularExpressionBox] = [:]
        for shape in shapes.values {
            if let p = shape.pattern, patterns[p] == nil, let re = try? NSRegularExpression(pattern: p) { patterns[p] = NSRegularExpressionBox(re) }
        }
        self.shapes = shapes
        self.operations = operations
        self.patterns = patterns
    }

    /// Checks `input` against the operation's input shape; throws the AWS validation error
    /// naming every problem. Unknown members are refused too (DataSync would not act on them).
    public func validate(operation: String, input: JSONValue) throws {
        guard let shapeName = operations[operation] else {
            throw ServerError(type: "UnknownOperationException", status: 400, message: "Unknown operation \(operation).")
        }
        var problems: [String] = []
        check(input, shapeName, path: "", into: &problems)
        if !problems.isEmpty { throw ServerError.validation(problems) }
    }

    private func check(_ value: JSONValue, _ shapeName: String, path: String, into problems: inout [String]) {
        guard let shape = shapes[shapeName] else { return }
        // Secrets are never echoed back.
        let secret = ["Secret", "Password", "Keytab", "Token", "Credentials"].contains { shapeName.contains($0) }
        func fail(_ constraint: String) {
            let shown = secret ? "***" : DataSyncModel.show(value)
            problems.append("Value '\(shown)' at '\(path)' failed to satisfy constraint: \(constraint)")
        }
        switch shape.type {
        case "structure":
            guard case .object(let members) = value else { return fail("Member must be a structure") }
            for r in shape.required where members[r] == nil || members[r] == .null {
                problems.append("Value null at '\(DataSyncModel.join(path, r))' failed to satisfy constraint: Member must not be null")
            }
            for (name, member) in members.sorted(by: { $0.key < $1.key }) {
                guard let memberShape = shape.members[name] else {
                    problems.append("Unknown member '\(DataSyncModel.join(path, name))'")
                    continue
                }
                if member == .null { continue }
                check(member, memberShape, path: DataSyncModel.join(path, name), into: &problems)
            }
        case "list":
            guard case .array(let items) = value else { return fail("Member must be a list") }
            if let min = shape.min, Double(items.count) < min { fail("Member must have length greater than or equal to \(Int(min))") }
            if let max = shape.max, Double(items.count) > max { fail("Member must have length less than or equal to \(Int(max))") }
            for (i, item) in items.enumerated() { check(item, shape.member ?? "", path: "\(path).\(i + 1).member", into: &problems) }
        case "map":
            guard case .object(let entries) = value else { return fail("Member must be a map") }
            for (k, v) in entries {
                check(.string(k), shape.key ?? "", path: "\(path).key", into: &problems)
                check(v, shape.value ?? "", path: "\(path).\(k)", into: &problems)
            }
        case "string":
            guard case .string(let s) = value else { return fail("Member must be a string") }
            let length = Double(s.count)
            if let min = shape.min, length < min { fail("Member must have length greater than or equal to \(Int(min))") }
            if let max = shape.max, length > max { fail("Member must have length less than or equal to \(Int(max))") }
            if let allowed = shape.enumValues, !allowed.contains(s) {
                fail("Member must satisfy enum value set: [\(allowed.joined(separator: ", "))]")
            }
            if let p = shape.pattern, let re = patterns[p], !re.matchesWhole(s) {
                fail("Member must satisfy regular expression pattern: \(p)")
            }
        case "integer", "long":
            guard case .number(let n) = value, n == n.rounded() else { return fail("Member must be an integer") }
            if let min = shape.min, n < min { fail("Member must have value greater than or equal to \(Int64(min))") }
            if let max = shape.max, n > max { fail("Member must have value less than or equal to \(Int64(max))") }
        case "boolean":
            guard case .bool = value else { return fail("Member must be a boolean") }
        case "timestamp":
            guard case .number = value else { return fail("Member must be a timestamp (epoch seconds)") }
        case "blob":
            guard case .string(let s) = value, let bytes = Data(base64Encoded: s) else { return fail("Member must be base64-encoded bytes") }
            if let max = shape.max, Double(bytes.count) > max { fail("Member must have length less than or equal to \(Int(max))") }
            if let min = shape.min, Double(bytes.count) < min { fail("Member must have length greater than or equal to \(Int(min))") }
        default:
            break
        }
    }

    static func join(_ path: String, _ member: String) -> String {
        let camel = member.prefix(1).lowercased() + member.dropFirst()
        return path.isEmpty ? camel : "\(path).\(camel)"
    }

    static func show(_ value: JSONValue) -> String {
        switch value {
        case .string(let s): return s.count > 200 ? String(s.prefix(200)) + "…" : s
        case .number(let n): return n == n.rounded() ? "\(Int64(n))" : "\(n)"
        case .bool(let b): return "\(b)"
        case .null: return "null"
        case .array, .object: return String(value.text.prefix(200))
        }
    }
}

/// `NSRegularExpression` is immutable once built and safe to share across threads.
final class NSRegularExpressionBox: @unchecked Sendable {
    let regex: NSRegularExpression
    init(_ regex: NSRegularExpression) { self.regex = regex }

    func matchesWhole(_ s: String) -> Bool {
        let range = NSRange(s.startIndex..., in: s)
        guard let m = regex.firstMatch(in: s, options: [.anchored], range: range) else { return false }
        return m.range == range
    }
}
