import Foundation

/// Starts child processes from threads that live as long as the test process.
///
/// Test servers run under `setpriv --pdeathsig KILL` so that they die with the tests. The
/// kernel sends that signal when the *thread* that started the child ends, not the
/// process: started from a thread of the Swift concurrency pool, a server dies whenever
/// the pool retires that thread — which it does after tests that block pool threads (seen
/// in CI: moto and the JuiceFS gateway vanished in the middle of the run). Each launch
/// here gets its own thread, parked until the process exits.
public enum ProcessLauncher {
    private final class Job: @unchecked Sendable {
        let process: Process
        var error: (any Error)?
        let started = DispatchSemaphore(value: 0)
        init(_ process: Process) { self.process = process }
    }

    /// `process.run()` on a thread that never ends; rethrows what `run()` threw.
    public static func run(_ process: Process) throws {
        let job = Job(process)
        let thread = Thread {
            do { try job.process.run() } catch { job.error = error }
            job.started.signal()
            while true { sleep(86_400) }
        }
        thread.stackSize = 256 << 10
        thread.start()
        job.started.wait()
        if let error = job.error { throw error }
    }

    /// Starts `argv` under `setpriv --pdeathsig KILL` (it dies with the tests) through
    /// ``run(_:)``: output appended to the file `output` (or dropped), `stdin` as its input.
    public static func start(_ p: Process, _ argv: [String], output: String? = nil, environment: [String: String]? = nil,
                             stdin: Pipe? = nil) throws {
        if let environment { p.environment = environment }
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--pdeathsig", "KILL", "--"] + argv
        if let stdin { p.standardInput = stdin }
        if let output {
            if !FileManager.default.fileExists(atPath: output) { FileManager.default.createFile(atPath: output, contents: nil) }
            let h = FileHandle(forWritingAtPath: output)
            h?.seekToEndOfFile()
            p.standardOutput = h
            p.standardError = h
        } else {
            p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        }
        try run(p)
    }

    /// Runs `argv` (an absolute path first) to its end, with `input` on its standard input;
    /// its standard output. Fails naming the command and quoting its error output unless it
    /// exits 0. (Error output goes to a file, so a chatty tool cannot block on a full pipe.)
    @discardableResult
    public static func output(_ argv: [String], input: String? = nil) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        let stdin = Pipe(), out = Pipe()
        if input != nil { p.standardInput = stdin }
        p.standardOutput = out
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-test-stderr-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: errors.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errors) }
        p.standardError = try FileHandle(forWritingTo: errors)
        try p.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try stdin.fileHandleForWriting.close()
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let said = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
            throw TestTreeError("\(argv.joined(separator: " ")) exited \(p.terminationStatus): \(said)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
