import Glibc

/// Names and addresses of the host Ferry runs on: two nfs:// or smb:// locations that name
/// this host differently (`localhost`, `127.0.0.1`, its name) are one server when Ferry
/// tells whether a source and destination overlap.
public enum ThisHost {
    /// Whether `name` is `localhost`, a loopback address, this host's name (short or
    /// full), or one of its interface addresses. No name is looked up in DNS: a name that
    /// is not one of these is taken as another host.
    public static func isThisHost(_ name: String) -> Bool {
        var n = name.lowercased()
        if n.hasPrefix("[") && n.hasSuffix("]") { n = String(n.dropFirst().dropLast()) }
        if n.hasSuffix(".") { n.removeLast() }
        if n == "localhost" || n.hasSuffix(".localhost") || n == "::1" || n.hasPrefix("127.") && isIPv4(n) { return true }
        let host = hostName().lowercased()
        if !host.isEmpty && (n == host || n == host.split(separator: ".").first.map(String.init)) { return true }
        return interfaceAddresses().contains(canonicalAddress(n) ?? n)
    }

    /// `name` as a scope names a server: `localhost` for every name of this host, else the
    /// name in lower case.
    public static func canonical(_ name: String) -> String {
        isThisHost(name) ? "localhost" : name.lowercased()
    }

    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "" }
        return String(cString: buffer)
    }

    /// This host's interface addresses, as `inet_ntop` writes them.
    static func interfaceAddresses() -> Set<String> {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var out: Set<String> = []
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr else { continue }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            switch Int32(address.pointee.sa_family) {
            case AF_INET:
                address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &a, &text, socklen_t(text.count))
                }
            case AF_INET6:
                address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                    var a = sin.pointee.sin6_addr
                    _ = inet_ntop(AF_INET6, &a, &text, socklen_t(text.count))
                }
            default:
                continue
            }
            out.insert(String(cString: text))
        }
        return out
    }

    /// An address written another way (`::0001`, `0:0:0:0:0:0:0:1`) as `inet_ntop` writes it.
    static func canonicalAddress(_ s: String) -> String? {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var a4 = in_addr(), a6 = in6_addr()
        if inet_pton(AF_INET, s, &a4) == 1 {
            _ = inet_ntop(AF_INET, &a4, &text, socklen_t(text.count))
            return String(cString: text)
        }
        if inet_pton(AF_INET6, s, &a6) == 1 {
            _ = inet_ntop(AF_INET6, &a6, &text, socklen_t(text.count))
            return String(cString: text)
        }
        return nil
    }

    private static func isIPv4(_ s: String) -> Bool {
        var a = in_addr()
        return inet_pton(AF_INET, s, &a) == 1
    }
}
