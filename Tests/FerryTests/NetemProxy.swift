import FerryTesting
import Foundation
import Glibc

/// `ferry-netem` (built beside `ferry`) in front of a server: delays, stalls and cuts for
/// tests of broken connections. Killed with the test process.
final class NetemProxy {
    let process = Process()
    let port: Int
    private let output = Pipe()

    /// A proxy on a free port to 127.0.0.1:`upstream` with `arguments` (`--cut-after N`, …).
    init(upstream: Int, _ arguments: [String]) throws {
        let executable = (CLI.executable as NSString).deletingLastPathComponent + "/ferry-netem"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--pdeathsig", "KILL", "--", executable, "--listen", "0", "--to", "127.0.0.1:\(upstream)"] + arguments
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try ProcessLauncher.run(process)
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { throw TestTreeError("ferry-netem (\(executable)) ended before it listened") }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let first = text.split(separator: "\n").first, first.hasPrefix("listening "), let p = Int(first.dropFirst(10)) else {
            throw TestTreeError("ferry-netem said \(text)")
        }
        port = p
    }

    /// Stops the proxy; what it printed after it listened (a line per cut or stall).
    func stop() -> String {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }
}
