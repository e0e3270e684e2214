/// Runs `body` for every item with at most `limit` of them in flight (a task group that
/// starts the next item as one finishes); the results come back in completion order.
public func boundedConcurrentMap<T: Sendable, R: Sendable>(_ items: [T], limit: Int,
                                                   _ body: @escaping @Sendable (T) async throws -> R) async throws -> [R] {
    var results: [R] = []
    results.reserveCapacity(items.count)
    try await withThrowingTaskGroup(of: R.self) { group in
        var next = 0
        while next < items.count && next < max(1, limit) {
            let item = items[next]
            group.addTask { try await body(item) }
            next += 1
        }
        while let result = try await group.next() {
            results.append(result)
            if next < items.count {
                let item = items[next]
                group.addTask { try await body(item) }
                next += 1
            }
        }
    }
    return results
}
