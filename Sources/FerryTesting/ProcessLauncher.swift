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
}
